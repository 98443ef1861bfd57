//! The message transports compared: shmkit's and its peers', each behind one
//! small `Endpoint` trait so that every contender runs the same loop.

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicU32, Ordering};

use serde::{Deserialize, Serialize};

use crate::util::{err, futex_wait, futex_wake, Line, Res, Shm};

/// Every contender that moves messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Transport {
    ShmPipe,
    ShmPipeZc,
    ShmQueue,
    ShmQueueZc,
    /// put / get_lease + copy + ack.
    ShmQueueLease,
    /// `Spin::Never` on every handle of both processes.
    ShmPipeNever,
    ShmQueueNever,
    OsPipe,
    SocketPair,
    PosixMq,
    Futex,
    Spin,
    IpcChannel,
    Interprocess,
    RawSyncEvent,
    Iceoryx2,
}

impl Transport {
    pub fn label(self) -> &'static str {
        match self {
            Transport::ShmPipe => "shmkit Pipe",
            Transport::ShmPipeZc => "shmkit Pipe, zero-copy",
            Transport::ShmQueue => "shmkit Queue",
            Transport::ShmQueueZc => "shmkit Queue, zero-copy",
            Transport::ShmQueueLease => "shmkit Queue, leases",
            Transport::ShmPipeNever => "shmkit Pipe, blocking-only",
            Transport::ShmQueueNever => "shmkit Queue, blocking-only",
            Transport::OsPipe => "pipe(2)",
            Transport::SocketPair => "Unix socketpair",
            Transport::PosixMq => "POSIX mq",
            Transport::Futex => "bare shared futex",
            Transport::Spin => "spin on shared atomic (floor)",
            Transport::IpcChannel => "ipc-channel",
            Transport::Interprocess => "interprocess local socket",
            Transport::RawSyncEvent => "raw_sync Event",
            Transport::Iceoryx2 => "iceoryx2",
        }
    }
}

/// What one side of a two-process measurement needs to know.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cfg {
    pub transport: Transport,
    /// Message size in bytes.
    pub size: usize,
    /// Queue slots, or pipe ring bytes (0: the crate's default).
    pub cap: usize,
    /// The base name side A creates its objects under.
    pub name: String,
    /// What side A said when ready (side B connects with it).
    pub token: String,
    /// This side's inherited file descriptors.
    pub fds: Vec<i32>,
    /// Latency: timed round trips and warm-up round trips.
    pub n: usize,
    pub warmup: usize,
    /// Throughput: measured seconds and warm-up seconds.
    pub secs: f64,
    pub warm_secs: f64,
    /// The control block's name.
    pub ctl: String,
    /// Throughput: side B sends without waiting for replies, so a
    /// one-message transport (the bare futex, the spin) must wait until
    /// the peer has taken the previous message.
    #[serde(default)]
    pub stream: bool,
}

/// One side's connection: sends and receives whole messages.
pub trait Endpoint {
    /// Sends `msg` (a zero-copy sender writes its bytes in place instead).
    fn send(&mut self, msg: &[u8]) -> Res<()>;
    /// Receives the next message, which is `buf.len()` bytes long, into
    /// `buf` (a zero-copy receiver reads every byte in place and copies out
    /// only the first 8, the sequence number).
    fn recv(&mut self, buf: &mut [u8]) -> Res<()>;
}

/// Side A's second step: accept or finish connecting.
pub type Pending = Box<dyn FnOnce() -> Res<Box<dyn Endpoint>>>;

fn head(msg: &[u8]) -> usize {
    msg.len().min(8)
}

/// A zero-copy producer writes its message in place: the sequence number
/// (the first 8 bytes of `msg`), then a fill of the rest — written once,
/// never read from a buffer of its own, as a producer that builds its
/// message where it will be read would.
fn fill_in_place(slot: &mut [u8], msg: &[u8]) {
    let h = head(msg);
    slot[..h].copy_from_slice(&msg[..h]);
    slot[h..].fill(0x5a);
}

/// A zero-copy consumer reads its message in place: every byte (folded
/// into a checksum it cannot skip), and the sequence number into `buf`.
fn read_in_place(m: &[u8], buf: &mut [u8]) -> Res<()> {
    if m.len() != buf.len() {
        return err(format!("got {} bytes, expected {}", m.len(), buf.len()));
    }
    let mut x = 0u64;
    let mut words = m.chunks_exact(8);
    for w in &mut words {
        x ^= u64::from_ne_bytes(w.try_into().unwrap());
    }
    for b in words.remainder() {
        x ^= u64::from(*b);
    }
    std::hint::black_box(x);
    let h = head(buf);
    buf[..h].copy_from_slice(&m[..h]);
    Ok(())
}

// ---------------------------------------------------------------------------
// shmkit

struct ShmPipeEnd {
    end: shmkit::PipeEnd,
    zc: bool,
}

impl Endpoint for ShmPipeEnd {
    fn send(&mut self, msg: &[u8]) -> Res<()> {
        if self.zc {
            let mut g = self.end.reserve(msg.len())?;
            fill_in_place(&mut g, msg);
            g.commit();
        } else {
            self.end.send(msg)?;
        }
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> Res<()> {
        if self.zc {
            let m = self.end.recv_ref()?;
            read_in_place(&m, buf)?;
        } else {
            let n = self.end.recv_into(buf)?;
            if n != buf.len() {
                return err(format!("got {n} bytes, expected {}", buf.len()));
            }
        }
        Ok(())
    }
}

/// The spin setting of a shmkit contender's handles: the default, or
/// `Spin::Never` for the blocking-only rows.
fn spin_of(t: Transport) -> shmkit::Spin {
    match t {
        Transport::ShmPipeNever | Transport::ShmQueueNever => shmkit::Spin::Never,
        _ => shmkit::Spin::Adaptive,
    }
}

/// The ring a pipe gets: the default, or one that holds a zero-copy message.
fn pipe_builder(cfg: &Cfg) -> shmkit::PipeBuilder {
    let mut b = shmkit::Pipe::builder();
    if cfg.cap > 0 {
        b = b.capacity(cfg.cap);
    }
    b
}

struct ShmQueueEnd {
    out: shmkit::Queue,
    inn: shmkit::Queue,
    zc: bool,
    lease: bool,
}

impl Endpoint for ShmQueueEnd {
    fn send(&mut self, msg: &[u8]) -> Res<()> {
        if self.zc {
            let mut g = self.out.reserve(msg.len())?;
            fill_in_place(&mut g, msg);
            g.commit()?;
        } else {
            self.out.put(msg)?;
        }
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> Res<()> {
        if self.lease {
            let l = self.inn.get_lease()?;
            if l.len() != buf.len() {
                return err(format!("got {} bytes, expected {}", l.len(), buf.len()));
            }
            buf.copy_from_slice(&l);
            l.ack()?;
        } else if self.zc {
            let m = self.inn.get_ref()?;
            read_in_place(&m, buf)?;
        } else {
            let n = self.inn.get_into(buf)?;
            if n != buf.len() {
                return err(format!("got {n} bytes, expected {}", buf.len()));
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Byte streams: pipe(2), socketpair, interprocess local sockets.

struct StreamEnd<R: Read, W: Write> {
    r: R,
    w: W,
}

impl<R: Read, W: Write> Endpoint for StreamEnd<R, W> {
    fn send(&mut self, msg: &[u8]) -> Res<()> {
        self.w.write_all(msg)?;
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> Res<()> {
        self.r.read_exact(buf)?;
        Ok(())
    }
}

/// One object that both reads and writes.
struct Duplex<S: Read + Write>(S);

impl<S: Read + Write> Endpoint for Duplex<S> {
    fn send(&mut self, msg: &[u8]) -> Res<()> {
        self.0.write_all(msg)?;
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> Res<()> {
        self.0.read_exact(buf)?;
        Ok(())
    }
}

/// # Safety
/// `fd` must be an open descriptor that nothing else in this process owns.
unsafe fn file(fd: i32) -> File {
    // SAFETY: per the caller.
    unsafe { File::from_raw_fd(fd) }
}

/// Makes the descriptors for a pipe(2) or socketpair contender: (A's, B's).
pub fn make_fds(t: Transport) -> Res<(Vec<i32>, Vec<i32>)> {
    match t {
        Transport::OsPipe => {
            let (mut ab, mut ba) = ([0i32; 2], [0i32; 2]);
            // SAFETY: valid out arrays of two ints.
            unsafe {
                if libc::pipe2(ab.as_mut_ptr(), libc::O_CLOEXEC) != 0
                    || libc::pipe2(ba.as_mut_ptr(), libc::O_CLOEXEC) != 0
                {
                    return Err(std::io::Error::last_os_error().into());
                }
            }
            // A writes ab[1], reads ba[0]; B reads ab[0], writes ba[1].
            Ok((vec![ba[0], ab[1]], vec![ab[0], ba[1]]))
        }
        Transport::SocketPair => {
            let mut sv = [0i32; 2];
            // SAFETY: a valid out array of two ints.
            let r = unsafe {
                libc::socketpair(
                    libc::AF_UNIX,
                    libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
                    0,
                    sv.as_mut_ptr(),
                )
            };
            if r != 0 {
                return Err(std::io::Error::last_os_error().into());
            }
            Ok((vec![sv[0]], vec![sv[1]]))
        }
        _ => Ok((vec![], vec![])),
    }
}

fn fd_end(cfg: &Cfg) -> Res<Box<dyn Endpoint>> {
    match (cfg.transport, cfg.fds.as_slice()) {
        (Transport::OsPipe, &[r, w]) => Ok(Box::new(StreamEnd {
            // SAFETY: these descriptors were inherited for this side alone.
            r: unsafe { file(r) },
            // SAFETY: as above.
            w: unsafe { file(w) },
        })),
        // SAFETY: as above.
        (Transport::SocketPair, &[s]) => Ok(Box::new(Duplex(unsafe { file(s) }))),
        _ => err("bad descriptors"),
    }
}

// ---------------------------------------------------------------------------
// POSIX message queues.

struct Mq {
    out: libc::mqd_t,
    inn: libc::mqd_t,
    names: Vec<CString>,
    owner: bool,
}

fn mq_open(name: &CString, create: bool, size: usize) -> Res<libc::mqd_t> {
    // SAFETY: `attr` is fully initialised; the name is a valid C string.
    let q = unsafe {
        let mut attr: libc::mq_attr = std::mem::zeroed();
        attr.mq_maxmsg = 10;
        attr.mq_msgsize = size.max(1) as _;
        if create {
            libc::mq_open(
                name.as_ptr(),
                libc::O_RDWR | libc::O_CREAT | libc::O_EXCL,
                0o600 as libc::mode_t,
                &attr as *const libc::mq_attr,
            )
        } else {
            libc::mq_open(name.as_ptr(), libc::O_RDWR)
        }
    };
    if q < 0 {
        let e = std::io::Error::last_os_error();
        let max = std::fs::read_to_string("/proc/sys/fs/mqueue/msgsize_max").unwrap_or_default();
        return err(format!(
            "mq_open({size}-byte messages, 10 deep): {e} (msgsize_max {}, RLIMIT_MSGQUEUE)",
            max.trim()
        ));
    }
    Ok(q)
}

fn mq_names(base: &str) -> Res<(CString, CString)> {
    Ok((
        CString::new(format!("/{base}-ab"))?,
        CString::new(format!("/{base}-ba"))?,
    ))
}

impl Endpoint for Mq {
    fn send(&mut self, msg: &[u8]) -> Res<()> {
        // SAFETY: an open queue; `msg` is valid for its length.
        let r = unsafe { libc::mq_send(self.out, msg.as_ptr().cast(), msg.len(), 0) };
        if r != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> Res<()> {
        // SAFETY: an open queue whose message size is buf.len().
        let n = unsafe {
            libc::mq_receive(
                self.inn,
                buf.as_mut_ptr().cast(),
                buf.len().max(1),
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        if n as usize != buf.len() {
            return err("short message");
        }
        Ok(())
    }
}

impl Drop for Mq {
    fn drop(&mut self) {
        // SAFETY: queues this side opened; names it created.
        unsafe {
            libc::mq_close(self.out);
            libc::mq_close(self.inn);
            if self.owner {
                for n in &self.names {
                    libc::mq_unlink(n.as_ptr());
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// One message at a time over a shared region: bare futex, spin, raw_sync.

/// Region layout: two flags, two acknowledgements (for streaming), then
/// two 4 KiB buffers (A→B, B→A), each flag and acknowledgement on a cache
/// line of its own.
const SLOT_FLAGS: usize = 0;
const SLOT_ACKS: usize = 128;
const SLOT_BUF: usize = 1024;
const SLOT_MAX: usize = 4096;
const SLOT_LEN: usize = SLOT_BUF + 2 * SLOT_MAX;

struct Slots {
    shm: Shm,
    side: usize,
    sent: u32,
    got: u32,
    sleep: bool,
    /// Wait for the peer's acknowledgement before reusing the slot
    /// (throughput); a round trip needs none, the reply is one.
    stream: bool,
}

impl Slots {
    fn new(shm: Shm, side: usize, cfg: &Cfg) -> Slots {
        Slots {
            shm,
            side,
            sent: 0,
            got: 0,
            sleep: cfg.transport == Transport::Futex,
            stream: cfg.stream,
        }
    }

    fn word(&self, off: usize, dir: usize) -> &AtomicU32 {
        // SAFETY: two cache lines of atomics at `off` (SLOT_FLAGS or
        // SLOT_ACKS), inside the region.
        let lines = unsafe { self.shm.at::<[Line<AtomicU32>; 2]>(off) };
        &lines[dir].0
    }

    /// How many messages the sender of `dir` has sent.
    fn flag(&self, dir: usize) -> &AtomicU32 {
        self.word(SLOT_FLAGS, dir)
    }

    /// How many messages of `dir` its receiver has taken (streaming only).
    fn ack(&self, dir: usize) -> &AtomicU32 {
        self.word(SLOT_ACKS, dir)
    }

    /// Waits until `word` holds `want`: sleeping in FUTEX_WAIT, or spinning.
    fn wait_for(&self, word: &AtomicU32, want: u32) {
        loop {
            let v = word.load(Ordering::Acquire);
            if v == want {
                return;
            }
            if self.sleep {
                futex_wait(word, v);
            } else {
                std::hint::spin_loop();
            }
        }
    }

    fn buf(&self, dir: usize) -> *mut u8 {
        // SAFETY: the buffers lie inside the region (SLOT_LEN).
        unsafe { self.shm.ptr().add(SLOT_BUF + dir * SLOT_MAX) }
    }
}

impl Endpoint for Slots {
    fn send(&mut self, msg: &[u8]) -> Res<()> {
        if msg.len() > SLOT_MAX {
            return err("message too large for the slot");
        }
        let dir = self.side;
        if self.stream {
            self.wait_for(self.ack(dir), self.sent);
        }
        // SAFETY: the peer reads this buffer only after the flag below, and
        // writes nothing to it; ping-pong (or, streaming, its
        // acknowledgement) keeps us from overwriting a message it has not
        // read.
        unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), self.buf(dir), msg.len()) };
        self.sent = self.sent.wrapping_add(1);
        self.flag(dir).store(self.sent, Ordering::Release);
        if self.sleep {
            futex_wake(self.flag(dir));
        }
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> Res<()> {
        let dir = 1 - self.side;
        let want = self.got.wrapping_add(1);
        self.wait_for(self.flag(dir), want);
        self.got = want;
        // SAFETY: the flag's Acquire makes the peer's bytes visible; it does
        // not write them again until we reply (or acknowledge, below).
        unsafe { std::ptr::copy_nonoverlapping(self.buf(dir), buf.as_mut_ptr(), buf.len()) };
        if self.stream {
            self.ack(dir).store(want, Ordering::Release);
            if self.sleep {
                futex_wake(self.ack(dir));
            }
        }
        Ok(())
    }
}

struct RawSyncEnd {
    _shm: Shm,
    out: Box<dyn raw_sync::events::EventImpl>,
    inn: Box<dyn raw_sync::events::EventImpl>,
    bufs: [*mut u8; 2],
    side: usize,
}

const EV_OFF: [usize; 2] = [0, 256];

impl RawSyncEnd {
    fn new(shm: Shm, side: usize, create: bool) -> Res<RawSyncEnd> {
        use raw_sync::events::{Event, EventInit};
        assert!(Event::size_of(None) <= 256 - 8);
        let mut evs = Vec::new();
        for off in EV_OFF {
            // SAFETY: 256 bytes at `off`, inside the region and 8-aligned;
            // created once by side A before it says READY.
            let ev = unsafe {
                let p = shm.ptr().add(off);
                if create {
                    Event::new(p, true)
                } else {
                    Event::from_existing(p)
                }
            }
            .map_err(|e| format!("raw_sync Event: {e}"))?
            .0;
            evs.push(ev);
        }
        let inn = evs.remove(1 - side);
        let out = evs.remove(0);
        // SAFETY: inside the region (SLOT_LEN bytes).
        let bufs = unsafe { [shm.ptr().add(SLOT_BUF), shm.ptr().add(SLOT_BUF + SLOT_MAX)] };
        Ok(RawSyncEnd {
            _shm: shm,
            out,
            inn,
            bufs,
            side,
        })
    }
}

impl Endpoint for RawSyncEnd {
    fn send(&mut self, msg: &[u8]) -> Res<()> {
        // SAFETY: as for `Slots`: ping-pong hands the buffer over.
        unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), self.bufs[self.side], msg.len()) };
        self.out
            .set(raw_sync::events::EventState::Signaled)
            .map_err(|e| format!("raw_sync set: {e}"))?;
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> Res<()> {
        self.inn
            .wait(raw_sync::Timeout::Infinite)
            .map_err(|e| format!("raw_sync wait: {e}"))?;
        // SAFETY: as for `Slots`.
        unsafe {
            std::ptr::copy_nonoverlapping(self.bufs[1 - self.side], buf.as_mut_ptr(), buf.len())
        };
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// ipc-channel

struct IpcEnd {
    tx: ipc_channel::ipc::IpcBytesSender,
    rx: ipc_channel::ipc::IpcBytesReceiver,
}

impl Endpoint for IpcEnd {
    fn send(&mut self, msg: &[u8]) -> Res<()> {
        self.tx.send(msg)?;
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> Res<()> {
        let v = self.rx.recv().map_err(|e| format!("ipc-channel: {e:?}"))?;
        if v.len() != buf.len() {
            return err("short message");
        }
        buf.copy_from_slice(&v);
        Ok(())
    }
}

type IpcBoot = (
    ipc_channel::ipc::IpcBytesSender,
    ipc_channel::ipc::IpcBytesReceiver,
);

// ---------------------------------------------------------------------------
// Setting up each side.

/// Side A: creates the objects; returns what to tell side B and how to
/// finish connecting.
pub fn prepare_a(cfg: &Cfg) -> Res<(String, Pending)> {
    let name = cfg.name.clone();
    let cfg2 = cfg.clone();
    Ok(match cfg.transport {
        Transport::ShmPipe | Transport::ShmPipeZc | Transport::ShmPipeNever => {
            let end = pipe_builder(cfg).create(&name)?;
            end.set_spin(spin_of(cfg.transport));
            let zc = cfg.transport == Transport::ShmPipeZc;
            (
                name,
                Box::new(move || Ok(Box::new(ShmPipeEnd { end, zc }) as _)),
            )
        }
        Transport::ShmQueue
        | Transport::ShmQueueZc
        | Transport::ShmQueueLease
        | Transport::ShmQueueNever => {
            let out = shmkit::Queue::create(&format!("{name}-ab"), cfg.cap, cfg.size)?;
            let inn = shmkit::Queue::create(&format!("{name}-ba"), cfg.cap, cfg.size)?;
            out.set_spin(spin_of(cfg.transport));
            inn.set_spin(spin_of(cfg.transport));
            let zc = cfg.transport == Transport::ShmQueueZc;
            let lease = cfg.transport == Transport::ShmQueueLease;
            (
                name,
                Box::new(move || {
                    Ok(Box::new(ShmQueueEnd {
                        out,
                        inn,
                        zc,
                        lease,
                    }) as _)
                }),
            )
        }
        Transport::OsPipe | Transport::SocketPair => {
            (String::new(), Box::new(move || fd_end(&cfg2)))
        }
        Transport::PosixMq => {
            let (ab, ba) = mq_names(&name)?;
            let out = mq_open(&ab, true, cfg.size)?;
            let inn = mq_open(&ba, true, cfg.size).inspect_err(|_| {
                // SAFETY: the queue we just made.
                unsafe {
                    libc::mq_close(out);
                    libc::mq_unlink(ab.as_ptr());
                }
            })?;
            let mq = Mq {
                out,
                inn,
                names: vec![ab, ba],
                owner: true,
            };
            (name, Box::new(move || Ok(Box::new(mq) as _)))
        }
        Transport::Futex | Transport::Spin => {
            let s = Slots::new(Shm::create(&name, SLOT_LEN)?, 0, cfg);
            (name, Box::new(move || Ok(Box::new(s) as _)))
        }
        Transport::RawSyncEvent => {
            let shm = Shm::create(&name, SLOT_LEN)?;
            let e = RawSyncEnd::new(shm, 0, true)?;
            (name, Box::new(move || Ok(Box::new(e) as _)))
        }
        Transport::IpcChannel => {
            let (server, token) = ipc_channel::ipc::IpcOneShotServer::<IpcBoot>::new()?;
            (
                token,
                Box::new(move || {
                    let (_rx, (tx, rx)) = server
                        .accept()
                        .map_err(|e| format!("ipc-channel accept: {e}"))?;
                    Ok(Box::new(IpcEnd { tx, rx }) as _)
                }),
            )
        }
        Transport::Interprocess => {
            use interprocess::local_socket::{prelude::*, GenericNamespaced, ListenerOptions};
            let sock = format!("{name}.sock");
            let listener = ListenerOptions::new()
                .name(sock.clone().to_ns_name::<GenericNamespaced>()?)
                .create_sync()?;
            (
                sock,
                Box::new(move || {
                    let s = listener.accept()?;
                    Ok(Box::new(Duplex(s)) as _)
                }),
            )
        }
        Transport::Iceoryx2 => crate::ice::prepare_a(cfg)?,
    })
}

/// Side B: connects with what side A said.
pub fn open_b(cfg: &Cfg) -> Res<Box<dyn Endpoint>> {
    let token = cfg.token.as_str();
    Ok(match cfg.transport {
        Transport::ShmPipe | Transport::ShmPipeZc | Transport::ShmPipeNever => {
            let end = shmkit::Pipe::open(token)?;
            end.set_spin(spin_of(cfg.transport));
            Box::new(ShmPipeEnd {
                end,
                zc: cfg.transport == Transport::ShmPipeZc,
            })
        }
        Transport::ShmQueue
        | Transport::ShmQueueZc
        | Transport::ShmQueueLease
        | Transport::ShmQueueNever => {
            let out = shmkit::Queue::open(&format!("{token}-ba"))?;
            let inn = shmkit::Queue::open(&format!("{token}-ab"))?;
            out.set_spin(spin_of(cfg.transport));
            inn.set_spin(spin_of(cfg.transport));
            Box::new(ShmQueueEnd {
                out,
                inn,
                zc: cfg.transport == Transport::ShmQueueZc,
                lease: cfg.transport == Transport::ShmQueueLease,
            })
        }
        Transport::OsPipe | Transport::SocketPair => fd_end(cfg)?,
        Transport::PosixMq => {
            let (ab, ba) = mq_names(token)?;
            let inn = mq_open(&ab, false, cfg.size)?;
            let out = mq_open(&ba, false, cfg.size)?;
            Box::new(Mq {
                out,
                inn,
                names: vec![],
                owner: false,
            })
        }
        Transport::Futex | Transport::Spin => Box::new(Slots::new(Shm::open(token)?, 1, cfg)),
        Transport::RawSyncEvent => Box::new(RawSyncEnd::new(Shm::open(token)?, 1, false)?),
        Transport::IpcChannel => {
            let boot = ipc_channel::ipc::IpcSender::<IpcBoot>::connect(token.to_owned())?;
            let (to_b_tx, to_b_rx) = ipc_channel::ipc::bytes_channel()?;
            let (to_a_tx, to_a_rx) = ipc_channel::ipc::bytes_channel()?;
            boot.send((to_b_tx, to_a_rx))
                .map_err(|e| format!("ipc-channel bootstrap: {e}"))?;
            Box::new(IpcEnd {
                tx: to_a_tx,
                rx: to_b_rx,
            })
        }
        Transport::Interprocess => {
            use interprocess::local_socket::{prelude::*, GenericNamespaced, Stream};
            let s = Stream::connect(token.to_owned().to_ns_name::<GenericNamespaced>()?)?;
            Box::new(Duplex(s))
        }
        Transport::Iceoryx2 => crate::ice::open_b(cfg)?,
    })
}
