//! What each child process does. A child is this binary re-executed with
//! `--role NAME ARGS…`; it talks to the parent by lines on stdout
//! (`READY token`, `RESULT json`, `SKIP reason`).

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::transport::{open_b, prepare_a, Cfg};
use crate::util::{ctl, err, mono_ns, parse, say, stats, Res, Shm, Stats, CTL_LEN};

/// Runs the role and exits the process.
pub fn run(role: &str, args: &[String]) -> ! {
    let r = match role {
        "lat-a" => lat_a(args),
        "lat-b" => lat_b(args),
        "tp-a" => tp_a(args),
        "tp-b" => tp_b(args),
        "scale-prod" => scale_prod(args),
        "scale-cons" => scale_cons(args),
        "uncontended" => uncontended(args),
        "contend" => contend(args),
        "segment" => segment(args),
        "rec-survivor" => rec_survivor(args),
        "rec-victim" => rec_victim(args),
        "idle" => Ok(()),
        "hog" => hog(),
        _ => err(format!("unknown role {role}")),
    };
    match r {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            // A role that cannot run says why; the parent records a skip.
            say("SKIP", &e.to_string().replace('\n', " "));
            eprintln!("role {role}: {e}");
            std::process::exit(3)
        }
    }
}

fn cfg(args: &[String]) -> Res<Cfg> {
    Ok(serde_json::from_str(
        args.first().ok_or("missing configuration")?,
    )?)
}

fn put_seq(msg: &mut [u8], seq: u64) {
    let b = seq.to_le_bytes();
    let h = msg.len().min(8);
    msg[..h].copy_from_slice(&b[..h]);
}

fn get_seq(msg: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let h = msg.len().min(8);
    b[..h].copy_from_slice(&msg[..h]);
    u64::from_le_bytes(b)
}

/// With `SHMKIT_BENCH_SAMPLES=DIR`, writes every sample in order to
/// DIR/TAG-PID.txt, to look at how a contender behaves over time.
pub fn dump_samples(tag: &str, samples: &[f64]) -> Res<()> {
    if let Some(dir) = std::env::var_os("SHMKIT_BENCH_SAMPLES") {
        let path = std::path::Path::new(&dir).join(format!("{tag}-{}.txt", std::process::id()));
        let text: Vec<String> = samples.iter().map(|s| format!("{s}")).collect();
        std::fs::write(path, text.join("\n"))?;
    }
    Ok(())
}

/// A CPU-bound busy loop at normal priority (the loaded section): says
/// READY and spins until the parent kills it.
fn hog() -> Res<()> {
    say("READY", "");
    let mut x = 0u64;
    loop {
        x = black_box(x.wrapping_add(1));
    }
}

/// The sequence number that ends a stream (fits any message of >= 8 bytes).
const SENTINEL: u64 = u64::MAX;

// ---------------------------------------------------------------------------
// Round-trip latency: A pings, B echoes.

fn lat_a(args: &[String]) -> Res<()> {
    let cfg = cfg(args)?;
    let (token, pending) = prepare_a(&cfg)?;
    say("READY", &token);
    let mut ep = pending()?;
    let mut msg = vec![0xA5u8; cfg.size];
    let mut buf = vec![0u8; cfg.size];
    let mask = if cfg.size >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * cfg.size)) - 1
    };
    let mut samples = Vec::with_capacity(cfg.n);
    for i in 0..(cfg.warmup + cfg.n) as u64 {
        put_seq(&mut msg, i);
        let t0 = Instant::now();
        ep.send(&msg)?;
        ep.recv(&mut buf)?;
        let dt = t0.elapsed();
        if get_seq(&buf) != i & mask {
            return err(format!("reply {} to ping {i}", get_seq(&buf)));
        }
        if i as usize >= cfg.warmup {
            samples.push(dt.as_nanos() as f64);
        }
    }
    dump_samples(&format!("rt-{:?}-{}", cfg.transport, cfg.size), &samples)?;
    let s = stats(&mut samples, true);
    say("RESULT", &serde_json::to_string(&s)?);
    Ok(())
}

fn lat_b(args: &[String]) -> Res<()> {
    let cfg = cfg(args)?;
    let mut ep = open_b(&cfg)?;
    let mut buf = vec![0u8; cfg.size];
    for _ in 0..cfg.warmup + cfg.n {
        ep.recv(&mut buf)?;
        ep.send(&buf)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Throughput: B produces as fast as it can, A consumes and times batches.

/// Messages per timing sample: about 1 MiB, at least 4 messages.
pub fn batch_of(size: usize) -> usize {
    ((1 << 20) / size.max(1)).max(4)
}

#[derive(Serialize, Deserialize)]
pub struct TpResult {
    /// Messages per second, per batch.
    pub rate: Stats,
    /// Messages over the measured time, divided by it.
    pub overall: f64,
    pub messages: u64,
}

fn tp_a(args: &[String]) -> Res<()> {
    let cfg = cfg(args)?;
    let (token, pending) = prepare_a(&cfg)?;
    say("READY", &token);
    let shm = Shm::open(&cfg.ctl)?;
    let c = ctl(&shm);
    let mut ep = pending()?;
    let mut buf = vec![0u8; cfg.size];
    let batch = batch_of(cfg.size);
    let mut expect = 0u64;
    let start = Instant::now();
    let warm = Duration::from_secs_f64(cfg.warm_secs);
    let end = warm + Duration::from_secs_f64(cfg.secs);
    let mut rates = Vec::new();
    let (mut t_first, mut n_first) = (None, 0u64);
    let mut last = Instant::now();
    loop {
        for _ in 0..batch {
            ep.recv(&mut buf)?;
            let s = get_seq(&buf);
            if s != expect {
                return err(format!("message {s}, expected {expect}"));
            }
            expect += 1;
        }
        let now = Instant::now();
        let since = now - start;
        if since >= warm {
            match t_first {
                None => {
                    t_first = Some(now);
                    n_first = expect;
                }
                Some(_) => rates.push(batch as f64 / (now - last).as_secs_f64()),
            }
        }
        last = now;
        if since >= end && rates.len() >= 3 {
            break;
        }
        if since >= end + Duration::from_secs(30) {
            break;
        }
    }
    let overall = (expect - n_first) as f64 / (last - t_first.unwrap()).as_secs_f64();
    c.stop.0.store(1, Ordering::Release);
    // Drain until the producer's last message.
    loop {
        ep.recv(&mut buf)?;
        if get_seq(&buf) == SENTINEL {
            break;
        }
    }
    dump_samples(&format!("tp-{:?}-{}", cfg.transport, cfg.size), &rates)?;
    let r = TpResult {
        rate: stats(&mut rates, false),
        overall,
        messages: expect,
    };
    say("RESULT", &serde_json::to_string(&r)?);
    Ok(())
}

fn tp_b(args: &[String]) -> Res<()> {
    let cfg = cfg(args)?;
    let shm = Shm::open(&cfg.ctl)?;
    let c = ctl(&shm);
    let mut ep = open_b(&cfg)?;
    let mut msg: Vec<u8> = (0..cfg.size).map(|i| i as u8).collect();
    let mut seq = 0u64;
    while c.stop.0.load(Ordering::Relaxed) == 0 {
        put_seq(&mut msg, seq);
        ep.send(&msg)?;
        seq += 1;
    }
    put_seq(&mut msg, SENTINEL);
    ep.send(&msg)?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Queue scaling: P producer and P consumer processes on one shmkit Queue.

fn wait_go(c: &crate::util::Ctl, round: u32) -> Res<()> {
    crate::util::poll_until(Duration::from_secs(120), || {
        c.go.0.load(Ordering::Acquire) >= round
    })
}

fn scale_prod(args: &[String]) -> Res<()> {
    let q = shmkit::Queue::open(&args[0])?;
    let shm = Shm::open(&args[1])?;
    let id: usize = parse(args, 2)?;
    let size: usize = parse(args, 3)?;
    let c = ctl(&shm);
    let msg = vec![id as u8; size];
    c.ready.0.fetch_add(1, Ordering::AcqRel);
    wait_go(c, 1)?;
    let mut n = 0u64;
    while c.stop.0.load(Ordering::Relaxed) == 0 {
        match q.put(&msg) {
            Ok(()) => n += 1,
            Err(shmkit::Error::Closed { .. }) => break,
            Err(e) => return Err(e.into()),
        }
    }
    c.counts[8 + id].0.store(n, Ordering::Release);
    Ok(())
}

fn scale_cons(args: &[String]) -> Res<()> {
    let q = shmkit::Queue::open(&args[0])?;
    let shm = Shm::open(&args[1])?;
    let id: usize = parse(args, 2)?;
    let size: usize = parse(args, 3)?;
    let c = ctl(&shm);
    let mut buf = vec![0u8; size];
    c.ready.0.fetch_add(1, Ordering::AcqRel);
    wait_go(c, 1)?;
    let mut n = 0u64;
    loop {
        match q.get_into(&mut buf) {
            Ok(_) => {
                n += 1;
                c.counts[id].0.store(n, Ordering::Relaxed);
            }
            Err(shmkit::Error::Closed { .. }) => break,
            Err(e) => return Err(e.into()),
        }
    }
    c.counts[id].0.store(n, Ordering::Release);
    Ok(())
}

// ---------------------------------------------------------------------------
// Locks and counters.

/// Every lock and counter compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockKind {
    ShmLock,
    Pthread,
    PthreadRobust,
    RawSync,
    StdMutex,
    ValueLock,
    ValueFetchAdd,
    BareAtomic,
    /// A u64 in shared memory: lock = compare_exchange(0, 1, Acquire),
    /// unlock = store(0, Release). Not robust: the floor under a lock.
    CasStore,
}

impl LockKind {
    pub fn label(self) -> &'static str {
        match self {
            LockKind::ShmLock => "shmkit Lock",
            LockKind::Pthread => "pthread mutex (process-shared)",
            LockKind::PthreadRobust => "pthread mutex (process-shared, robust)",
            LockKind::RawSync => "raw_sync Mutex",
            LockKind::StdMutex => "std::sync::Mutex (one process, floor)",
            LockKind::ValueLock => "shmkit Value<u64>, lock + 1",
            LockKind::ValueFetchAdd => "shmkit Value<u64>::fetch_add",
            LockKind::BareAtomic => "bare AtomicU64::fetch_add in shm (floor)",
            LockKind::CasStore => "bare CAS lock / store unlock in shm (floor)",
        }
    }

    fn key(self) -> String {
        serde_json::to_string(&self).unwrap()
    }

    pub fn from_key(s: &str) -> Res<LockKind> {
        Ok(serde_json::from_str(s)?)
    }

    /// Whether a lock lives in shared memory (several processes can use it).
    pub fn shared(self) -> bool {
        self != LockKind::StdMutex
    }

    pub fn arg(self) -> String {
        self.key()
    }
}

/// A lock with a counter it protects (or an atomic counter).
pub trait Ctr: Sync {
    /// One lock + unlock (for atomics: one increment).
    fn lock_unlock(&self) -> Res<()>;
    /// One increment of the protected counter.
    fn incr(&self) -> Res<()>;
    fn get(&self) -> u64;
}

/// # Safety
/// `p` must be valid for reads and writes of a u64 that only the caller
/// touches now (it holds the lock that guards it).
unsafe fn bump(p: *mut u64) {
    // SAFETY: per the caller.
    unsafe { p.write_volatile(p.read_volatile() + 1) }
}

struct ShmLockCtr {
    lock: shmkit::Lock,
    ctr: Shm,
}

// SAFETY: the counter is only touched under the lock; Shm's pointer is to
// a shared mapping that lives as long as the value.
unsafe impl Sync for ShmLockCtr {}

impl Ctr for ShmLockCtr {
    fn lock_unlock(&self) -> Res<()> {
        let g = self.lock.lock()?;
        black_box(&g);
        Ok(())
    }
    fn incr(&self) -> Res<()> {
        let _g = self.lock.lock()?;
        // SAFETY: we hold the lock that guards the counter.
        unsafe { bump(self.ctr.ptr().cast()) };
        Ok(())
    }
    fn get(&self) -> u64 {
        let _g = self.lock.lock();
        // SAFETY: as above.
        unsafe { self.ctr.ptr().cast::<u64>().read_volatile() }
    }
}

pub struct PthreadCtr {
    shm: Shm,
}

// SAFETY: the mutex is process-shared and made for concurrent use; the
// counter is only touched under it.
unsafe impl Sync for PthreadCtr {}

const PTHREAD_CTR_OFF: usize = 64;

impl PthreadCtr {
    pub fn create(name: &str, robust: bool) -> Res<PthreadCtr> {
        let shm = Shm::create(name, 4096)?;
        assert!(std::mem::size_of::<libc::pthread_mutex_t>() <= PTHREAD_CTR_OFF);
        // SAFETY: `attr` is initialised by pthread_mutexattr_init before
        // use; the mutex lies at the (page-aligned) start of a fresh region
        // nobody else uses yet.
        unsafe {
            let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
            if libc::pthread_mutexattr_init(&mut attr) != 0
                || libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED) != 0
                || (robust
                    && libc::pthread_mutexattr_setrobust(&mut attr, libc::PTHREAD_MUTEX_ROBUST)
                        != 0)
                || libc::pthread_mutex_init(shm.ptr().cast(), &attr) != 0
            {
                return err("pthread mutex init failed");
            }
            libc::pthread_mutexattr_destroy(&mut attr);
        }
        Ok(PthreadCtr { shm })
    }

    fn m(&self) -> *mut libc::pthread_mutex_t {
        self.shm.ptr().cast()
    }

    fn lock(&self) -> Res<()> {
        // SAFETY: an initialised process-shared mutex in a live mapping.
        let r = unsafe { libc::pthread_mutex_lock(self.m()) };
        match r {
            0 => Ok(()),
            libc::EOWNERDEAD => {
                // SAFETY: we hold the mutex after EOWNERDEAD.
                unsafe { libc::pthread_mutex_consistent(self.m()) };
                Ok(())
            }
            e => err(format!("pthread_mutex_lock: {e}")),
        }
    }

    fn unlock(&self) {
        // SAFETY: we hold it.
        unsafe { libc::pthread_mutex_unlock(self.m()) };
    }
}

impl Ctr for PthreadCtr {
    fn lock_unlock(&self) -> Res<()> {
        self.lock()?;
        self.unlock();
        Ok(())
    }
    fn incr(&self) -> Res<()> {
        self.lock()?;
        // SAFETY: we hold the mutex that guards the counter.
        unsafe { bump(self.shm.ptr().add(PTHREAD_CTR_OFF).cast()) };
        self.unlock();
        Ok(())
    }
    fn get(&self) -> u64 {
        let _ = self.lock();
        // SAFETY: as above.
        let v = unsafe {
            self.shm
                .ptr()
                .add(PTHREAD_CTR_OFF)
                .cast::<u64>()
                .read_volatile()
        };
        self.unlock();
        v
    }
}

struct RawSyncCtr {
    _shm: Shm,
    m: Box<dyn raw_sync::locks::LockImpl>,
}

// SAFETY: raw_sync's mutex is a process-shared pthread mutex; the counter
// is only touched under it.
unsafe impl Sync for RawSyncCtr {}

const RAWSYNC_CTR_OFF: usize = 512;

impl RawSyncCtr {
    fn make(shm: Shm, create: bool) -> Res<RawSyncCtr> {
        use raw_sync::locks::{LockInit, Mutex};
        // SAFETY: the region is 4096 bytes: the mutex at 0, its data at 512.
        let m = unsafe {
            let data = shm.ptr().add(RAWSYNC_CTR_OFF);
            if create {
                Mutex::new(shm.ptr(), data)
            } else {
                Mutex::from_existing(shm.ptr(), data)
            }
        }
        .map_err(|e| format!("raw_sync Mutex: {e}"))?
        .0;
        Ok(RawSyncCtr { _shm: shm, m })
    }
}

impl Ctr for RawSyncCtr {
    fn lock_unlock(&self) -> Res<()> {
        let g = self.m.lock().map_err(|e| format!("raw_sync lock: {e}"))?;
        black_box(&g);
        Ok(())
    }
    fn incr(&self) -> Res<()> {
        let g = self.m.lock().map_err(|e| format!("raw_sync lock: {e}"))?;
        // SAFETY: the guard derefs to the data pointer, a u64 we hold.
        unsafe { bump((*g).cast()) };
        Ok(())
    }
    fn get(&self) -> u64 {
        let g = self.m.lock().expect("raw_sync lock");
        // SAFETY: as above.
        unsafe { (*g).cast::<u64>().read_volatile() }
    }
}

struct StdCtr(std::sync::Mutex<u64>);

impl Ctr for StdCtr {
    fn lock_unlock(&self) -> Res<()> {
        let g = self.0.lock().map_err(|_| "poisoned")?;
        black_box(&g);
        Ok(())
    }
    fn incr(&self) -> Res<()> {
        *self.0.lock().map_err(|_| "poisoned")? += 1;
        Ok(())
    }
    fn get(&self) -> u64 {
        *self.0.lock().unwrap()
    }
}

struct ValueCtr {
    v: shmkit::Value<u64>,
    fetch_add: bool,
}

impl Ctr for ValueCtr {
    fn lock_unlock(&self) -> Res<()> {
        self.incr()
    }
    fn incr(&self) -> Res<()> {
        if self.fetch_add {
            black_box(self.v.fetch_add(1));
        } else {
            *self.v.lock()? += 1;
        }
        Ok(())
    }
    fn get(&self) -> u64 {
        self.v.load()
    }
}

struct AtomicCtr(Shm);

impl Ctr for AtomicCtr {
    fn lock_unlock(&self) -> Res<()> {
        self.incr()
    }
    fn incr(&self) -> Res<()> {
        // SAFETY: an AtomicU64 at the page-aligned start of the region.
        let a = unsafe { self.0.at::<AtomicU64>(0) };
        black_box(a.fetch_add(1, Ordering::AcqRel));
        Ok(())
    }
    fn get(&self) -> u64 {
        // SAFETY: as above.
        unsafe { self.0.at::<AtomicU64>(0) }.load(Ordering::Acquire)
    }
}

// SAFETY: only atomics are accessed through the mapping.
unsafe impl Sync for AtomicCtr {}

/// The lock word at the start of the region, the counter it guards on the
/// next cache line.
struct CasCtr(Shm);

const CAS_CTR_OFF: usize = 64;

impl CasCtr {
    fn word(&self) -> &AtomicU64 {
        // SAFETY: an AtomicU64 at the page-aligned start of the region.
        unsafe { self.0.at::<AtomicU64>(0) }
    }

    fn lock(&self) {
        while self
            .word()
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::hint::spin_loop();
        }
    }

    fn unlock(&self) {
        self.word().store(0, Ordering::Release);
    }

    fn ctr(&self) -> *mut u64 {
        // SAFETY: inside the 4096-byte region.
        unsafe { self.0.ptr().add(CAS_CTR_OFF).cast() }
    }
}

impl Ctr for CasCtr {
    fn lock_unlock(&self) -> Res<()> {
        self.lock();
        self.unlock();
        Ok(())
    }
    fn incr(&self) -> Res<()> {
        self.lock();
        // SAFETY: we hold the lock that guards the counter.
        unsafe { bump(self.ctr()) };
        self.unlock();
        Ok(())
    }
    fn get(&self) -> u64 {
        self.lock();
        // SAFETY: as above.
        let v = unsafe { self.ctr().read_volatile() };
        self.unlock();
        v
    }
}

// SAFETY: the word is an atomic; the counter is only touched under it.
unsafe impl Sync for CasCtr {}

/// What the parent keeps alive while children use a shared lock.
pub struct LockHolder {
    pub ctr: Option<Box<dyn Ctr>>,
    _keep: Vec<Box<dyn std::any::Any>>,
}

/// The parent creates the lock (and its counter) named `name`.
pub fn create_lock(kind: LockKind, name: &str) -> Res<LockHolder> {
    let mut keep: Vec<Box<dyn std::any::Any>> = Vec::new();
    match kind {
        LockKind::ShmLock => {
            keep.push(Box::new(shmkit::Lock::create(name)?));
            keep.push(Box::new(Shm::create(&format!("{name}-ctr"), 4096)?));
        }
        LockKind::Pthread | LockKind::PthreadRobust => {
            keep.push(Box::new(PthreadCtr::create(
                name,
                kind == LockKind::PthreadRobust,
            )?));
        }
        LockKind::RawSync => {
            keep.push(Box::new(RawSyncCtr::make(Shm::create(name, 4096)?, true)?));
        }
        LockKind::ValueLock | LockKind::ValueFetchAdd => {
            keep.push(Box::new(shmkit::Value::create(name, 0u64)?));
        }
        LockKind::BareAtomic | LockKind::CasStore => keep.push(Box::new(Shm::create(name, 4096)?)),
        LockKind::StdMutex => {}
    }
    let ctr = if kind.shared() {
        Some(open_lock(kind, name)?)
    } else {
        None
    };
    Ok(LockHolder { ctr, _keep: keep })
}

/// Opens the lock the parent created (or makes a process-local one).
pub fn open_lock(kind: LockKind, name: &str) -> Res<Box<dyn Ctr>> {
    Ok(match kind {
        LockKind::ShmLock => Box::new(ShmLockCtr {
            lock: shmkit::Lock::open(name)?,
            ctr: Shm::open(&format!("{name}-ctr"))?,
        }),
        LockKind::Pthread | LockKind::PthreadRobust => Box::new(PthreadCtr {
            shm: Shm::open(name)?,
        }),
        LockKind::RawSync => Box::new(RawSyncCtr::make(Shm::open(name)?, false)?),
        LockKind::StdMutex => Box::new(StdCtr(std::sync::Mutex::new(0))),
        LockKind::ValueLock | LockKind::ValueFetchAdd => Box::new(ValueCtr {
            v: shmkit::Value::open(name)?,
            fetch_add: kind == LockKind::ValueFetchAdd,
        }),
        LockKind::BareAtomic => Box::new(AtomicCtr(Shm::open(name)?)),
        LockKind::CasStore => Box::new(CasCtr(Shm::open(name)?)),
    })
}

/// Monomorphised timing loop: `batches` samples of `batch` operations.
fn time_batches<C: Ctr + ?Sized>(c: &C, batches: usize, batch: usize, incr: bool) -> Res<Stats> {
    let mut v = Vec::with_capacity(batches);
    for b in 0..batches + batches / 10 {
        let t0 = Instant::now();
        if incr {
            for _ in 0..batch {
                c.incr()?;
            }
        } else {
            for _ in 0..batch {
                c.lock_unlock()?;
            }
        }
        let dt = t0.elapsed().as_nanos() as f64 / batch as f64;
        if b >= batches / 10 {
            v.push(dt);
        }
    }
    Ok(stats(&mut v, true))
}

/// Uncontended cost, in one process: `args`: kind, batches, batch.
fn uncontended(args: &[String]) -> Res<()> {
    let kind = LockKind::from_key(&args[0])?;
    let batches: usize = parse(args, 1)?;
    let batch: usize = parse(args, 2)?;
    let name = crate::util::unique("lk");
    let holder = create_lock(kind, &name)?;
    let local;
    let c: &dyn Ctr = match &holder.ctr {
        Some(c) => c.as_ref(),
        None => {
            local = open_lock(kind, &name)?;
            local.as_ref()
        }
    };
    let s = time_batches(c, batches, batch, false)?;
    say("RESULT", &serde_json::to_string(&s)?);
    Ok(())
}

/// One participant (or, for a process-local lock, `threads` of them) of
/// the contention rounds: `args`: kind, name, ctl, threads, per_round, rounds.
fn contend(args: &[String]) -> Res<()> {
    let kind = LockKind::from_key(&args[0])?;
    let name = &args[1];
    let shm = Shm::open(&args[2])?;
    let threads: usize = parse(args, 3)?;
    let per_round: usize = parse(args, 4)?;
    let rounds: u32 = parse(args, 5)?;
    let c = ctl(&shm);
    let ctr = open_lock(kind, name)?;
    let ctr: &dyn Ctr = ctr.as_ref();
    std::thread::scope(|s| -> Res<()> {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(move || -> Result<(), String> {
                    c.ready.0.fetch_add(1, Ordering::AcqRel);
                    for r in 1..=rounds {
                        wait_go(c, r).map_err(|e| e.to_string())?;
                        for _ in 0..per_round {
                            ctr.incr().map_err(|e| e.to_string())?;
                        }
                        c.done.0.fetch_add(1, Ordering::AcqRel);
                    }
                    Ok(())
                })
            })
            .collect();
        for h in hs {
            h.join().map_err(|_| "participant panicked")??;
        }
        Ok(())
    })?;
    if !kind.shared() {
        let want = (threads * per_round) as u64 * u64::from(rounds);
        if ctr.get() != want {
            return err(format!("counter {} != {want}", ctr.get()));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Segments: create + map + unlink.

fn segment(args: &[String]) -> Res<()> {
    let kind = args[0].as_str();
    let n: usize = parse(args, 1)?;
    let size: usize = parse(args, 2)?;
    let pid = std::process::id();
    let mut v = Vec::with_capacity(n);
    for i in 0..n + n / 10 {
        let name = std::ffi::CString::new(format!("/shmkit-bench-seg-{pid}-{i}"))?;
        let t0 = Instant::now();
        match kind {
            "shmkit" => {
                let s = shmkit::Segment::create_unique(size)?;
                black_box(s.as_ptr());
                drop(s);
            }
            "shared_memory" => {
                let s = shared_memory::ShmemConf::new()
                    .size(size)
                    .create()
                    .map_err(|e| format!("shared_memory: {e}"))?;
                // SAFETY: a fresh mapping of `size` bytes that we own.
                unsafe { s.as_ptr().write_volatile(1) };
                drop(s);
            }
            "libc" => {
                // SAFETY: plain syscalls on a fresh name; results checked;
                // the mapping is written once and unmapped before return.
                unsafe {
                    let fd = libc::shm_open(
                        name.as_ptr(),
                        libc::O_CREAT | libc::O_EXCL | libc::O_RDWR,
                        0o600,
                    );
                    if fd < 0 || libc::ftruncate(fd, size as libc::off_t) != 0 {
                        return Err(std::io::Error::last_os_error().into());
                    }
                    let p = libc::mmap(
                        std::ptr::null_mut(),
                        size,
                        libc::PROT_READ | libc::PROT_WRITE,
                        libc::MAP_SHARED,
                        fd,
                        0,
                    );
                    if p == libc::MAP_FAILED {
                        return Err(std::io::Error::last_os_error().into());
                    }
                    p.cast::<u8>().write_volatile(1);
                    libc::munmap(p, size);
                    libc::close(fd);
                    libc::shm_unlink(name.as_ptr());
                }
            }
            _ => return err(format!("unknown segment kind {kind}")),
        }
        let dt = t0.elapsed().as_nanos() as f64;
        if i >= n / 10 {
            v.push(dt);
        }
    }
    say("RESULT", &serde_json::to_string(&stats(&mut v, true))?);
    Ok(())
}

// ---------------------------------------------------------------------------
// Recovery after SIGKILL: a victim holds something, a survivor in another
// process blocks on it, the parent kills the victim.

/// Every contender of the recovery group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecKind {
    ShmLock,
    ShmPipe,
    ShmQueue,
    PthreadRobust,
    OsPipe,
    SocketPair,
}

impl RecKind {
    pub fn label(self) -> &'static str {
        match self {
            RecKind::ShmLock => crate::report::RECOVER_LOCK,
            RecKind::ShmPipe => crate::report::RECOVER_PIPE,
            RecKind::ShmQueue => crate::report::RECOVER_QUEUE,
            RecKind::PthreadRobust => "robust pthread mutex (process-shared)",
            RecKind::OsPipe => "pipe(2)",
            RecKind::SocketPair => "Unix socketpair",
        }
    }

    /// What the survivor waits in, and what counts as noticing.
    pub fn noticed(self) -> &'static str {
        match self {
            RecKind::ShmLock => {
                "the holder is killed while a waiter in another process blocks in lock(); \
                 noticed: the waiter has its guard, with owner_died()"
            }
            RecKind::ShmPipe => {
                "the other end's process is killed while the survivor blocks in recv(); \
                 noticed: recv returns Err(Disconnected)"
            }
            RecKind::ShmQueue => {
                "capacity 1: a producer is killed holding a reserve grant (the one slot) \
                 while a producer in another process blocks in put(); noticed: that put \
                 returns Ok (the dead claim stepped over)"
            }
            RecKind::PthreadRobust => {
                "PTHREAD_MUTEX_ROBUST in shared memory; the holder is killed while a waiter \
                 blocks in pthread_mutex_lock; noticed: it returns EOWNERDEAD"
            }
            RecKind::OsPipe => {
                "the writer is killed while the reader blocks in read(2); noticed: read \
                 returns 0 (EOF)"
            }
            RecKind::SocketPair => {
                "SOCK_STREAM; the peer is killed while the survivor blocks in read(2); \
                 noticed: read returns 0 (EOF)"
            }
        }
    }

    pub fn arg(self) -> String {
        serde_json::to_string(&self).unwrap()
    }

    fn from_arg(s: &str) -> Res<RecKind> {
        Ok(serde_json::from_str(s)?)
    }
}

/// Keeps `_held` (a lock guard, a grant, a descriptor) until the parent
/// kills this process.
fn park<T>(_held: T) -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

/// Reads one byte from `fd`; Ok(true) at end of file.
fn read_eof(fd: i32) -> Res<bool> {
    let mut b = [0u8; 1];
    loop {
        // SAFETY: an inherited descriptor this process owns; `b` is valid
        // for one byte.
        let n = unsafe { libc::read(fd, b.as_mut_ptr().cast(), 1) };
        if n >= 0 {
            return Ok(n == 0);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e.into());
        }
    }
}

/// The victim: `args`: kind, object name, descriptor (or -1). Takes what
/// the survivor will wait for, says READY and waits to be killed.
fn rec_victim(args: &[String]) -> Res<()> {
    let kind = RecKind::from_arg(&args[0])?;
    let name = &args[1];
    let fd: i32 = parse(args, 2)?;
    match kind {
        RecKind::ShmLock => {
            let l = shmkit::Lock::open(name)?;
            let g = l.lock()?;
            say("READY", "");
            park((g, &l))
        }
        RecKind::ShmPipe => {
            let end = shmkit::Pipe::open(name)?;
            say("READY", "");
            park(end)
        }
        RecKind::ShmQueue => {
            let q = shmkit::Queue::open(name)?;
            let g = q.reserve(8)?;
            say("READY", "");
            park((g, &q))
        }
        RecKind::PthreadRobust => {
            let m = PthreadCtr {
                shm: Shm::open(name)?,
            };
            // SAFETY: the parent initialised a robust process-shared mutex
            // at the start of the region.
            let r = unsafe { libc::pthread_mutex_lock(m.m()) };
            if r != 0 {
                return err(format!("pthread_mutex_lock: {r}"));
            }
            say("READY", "");
            park(m)
        }
        RecKind::OsPipe | RecKind::SocketPair => {
            // The descriptor stays open until the kernel closes it at death.
            say("READY", "");
            park(fd)
        }
    }
}

/// The survivor: `args`: kind, object name, descriptor (or -1), control
/// block. Sets up (for a Pipe: creates it) and says READY; once the
/// parent's go flag is up (the victim holds its part), says READY again and
/// blocks; after it noticed the death, answers with CLOCK_MONOTONIC (ns)
/// read right after the blocking call returned.
fn rec_survivor(args: &[String]) -> Res<()> {
    let kind = RecKind::from_arg(&args[0])?;
    let name = &args[1];
    let fd: i32 = parse(args, 2)?;
    let shm = Shm::open(&args[3])?;
    let c = ctl(&shm);
    let go = || -> Res<()> {
        say("READY", "");
        wait_go(c, 1)?;
        say("READY", "");
        Ok(())
    };
    let t = match kind {
        RecKind::ShmLock => {
            let l = shmkit::Lock::open(name)?;
            go()?;
            let g = l.lock()?;
            let t = mono_ns();
            if !g.owner_died() {
                return err("lock() returned without owner_died()");
            }
            t
        }
        RecKind::ShmPipe => {
            let mut end = shmkit::Pipe::create(name)?;
            go()?;
            let r = end.recv();
            let t = mono_ns();
            match r {
                Err(shmkit::Error::Disconnected { .. }) => t,
                other => return err(format!("recv returned {other:?}")),
            }
        }
        RecKind::ShmQueue => {
            let q = shmkit::Queue::open(name)?;
            go()?;
            q.put(b"survivor")?;
            mono_ns()
        }
        RecKind::PthreadRobust => {
            let m = PthreadCtr {
                shm: Shm::open(name)?,
            };
            go()?;
            // SAFETY: a robust process-shared mutex the parent initialised.
            let r = unsafe { libc::pthread_mutex_lock(m.m()) };
            let t = mono_ns();
            if r != libc::EOWNERDEAD {
                return err(format!("pthread_mutex_lock returned {r}, not EOWNERDEAD"));
            }
            // SAFETY: we hold the mutex after EOWNERDEAD.
            unsafe {
                libc::pthread_mutex_consistent(m.m());
                libc::pthread_mutex_unlock(m.m());
            }
            t
        }
        RecKind::OsPipe | RecKind::SocketPair => {
            go()?;
            let eof = read_eof(fd)?;
            let t = mono_ns();
            if !eof {
                return err("read returned a byte, not EOF");
            }
            t
        }
    };
    say("RESULT", &t.to_string());
    Ok(())
}

/// The control block for a measurement, created by the parent.
pub fn new_ctl() -> Res<(String, Shm)> {
    let name = crate::util::unique("ctl");
    let shm = Shm::create(&name, CTL_LEN)?;
    Ok((name, shm))
}
