//! Death notice: a sleeper that depends on other tasks (a lock's owner, a
//! pipe's peer, a queue's participants) is woken as soon as one of them
//! exits, instead of waking every liveness interval to look.
//!
//! # Mechanism
//!
//! One lazily started thread per process, the watcher, sleeps in
//! `epoll_wait` over pidfds: one per awaited process (or, for a lock owned
//! by a thread, per thread with `PIDFD_THREAD`, Linux 6.9+). A sleeper
//! registers, before it sleeps, the futex word it sleeps on and the tasks
//! it waits for ([`watch`]); the returned [`Watch`] unregisters when
//! dropped. When a pidfd becomes readable the watcher bumps the process's
//! death epoch ([`deaths`]) and wakes every word registered for that task.
//! The woken sleeper sees the epoch moved and reads liveness at once.
//!
//! A watch is a hint, never a verdict: the liveness check that follows it
//! decides, as before, from `/proc` (only "no such task" is dead). A pidfd
//! is opened by id and then checked against the stamp (start time), so a
//! reused id is not watched in the dead task's stead; if that cannot be
//! settled (unknown start time, `/proc` or `pidfd_open` failing), the task
//! is reported unwatched and the sleeper keeps the short liveness interval.
//!
//! # Costs
//!
//! Nothing here runs on an uncontended path: only a caller about to sleep
//! registers. The first registration for a task costs `pidfd_open`, a
//! `/proc` read and `epoll_ctl`; pidfds are then cached (up to
//! [`CACHE`] tasks nobody waits for), so a lock contended again and again
//! costs one mutex and a few hash lookups per sleep.
//!
//! # Fork
//!
//! A forked child has no watcher thread and shares its parent's epoll
//! instance. The registry is kept per fork generation: the child's first
//! registration builds a new one (and a new thread), and leaves the
//! inherited one alone (leaked, never locked: its mutex may have been held
//! by a parent thread at the fork).

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicU8};
use std::sync::Mutex;
use std::time::Duration;

use super::{Futex, Liveness, Ordering, TaskStamp};
use crate::sys;

/// How long a sleeper whose every dependency is watched sleeps before it
/// looks for itself anyway (a wake lost to an error of the watcher, or a
/// dependency that changed while it slept).
pub(crate) const WATCHED_INTERVAL: Duration = Duration::from_secs(1);

/// How many pidfds of tasks nobody waits for stay open.
const CACHE: usize = 256;

/// A task a sleeper waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Target {
    /// A process (its stamp: pid and start time).
    Process(TaskStamp),
    /// A thread (a lock's owner).
    Thread(TaskStamp),
}

/// Deaths the watcher of this process has seen. A sleeper reads it before
/// it sleeps; a change afterwards means "read liveness now".
pub(crate) fn deaths() -> u64 {
    DEATHS.load(Ordering::SeqCst)
}

static DEATHS: AtomicU64 = AtomicU64::new(0);

/// What [`watch`] arranged.
#[must_use]
pub(crate) struct Watch {
    reg: Option<&'static Registry>,
    word: usize,
    keys: Vec<Target>,
    /// Every target is watched.
    pub(crate) all: bool,
    /// A target was found dead while registering.
    pub(crate) dead: bool,
}

impl Watch {
    /// How long to sleep at most before looking for oneself.
    pub(crate) fn interval(&self) -> Duration {
        if self.all {
            WATCHED_INTERVAL
        } else {
            super::LIVENESS_INTERVAL
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        // A watch inherited across fork(2) leaves the parent generation's
        // registry alone: a parent thread may have held its mutex at the
        // fork, and its watcher thread does not run here.
        if let Some(reg) = self.reg.filter(|r| r.gen == super::fork_gen()) {
            reg.unregister(self.word, &self.keys);
        }
    }
}

/// Registers `word` to be woken when any of `targets` exits; see the
/// module documentation. `word` must stay mapped until the `Watch` drops
/// (it is borrowed for that long by the caller's sleep).
pub(crate) fn watch(word: &Futex, targets: &[Target]) -> Watch {
    let addr = word.word().as_ptr() as usize;
    let mut w = Watch {
        reg: None,
        word: addr,
        keys: Vec::with_capacity(targets.len()),
        all: true,
        dead: false,
    };
    let Some(reg) = registry() else {
        w.all = false;
        return w;
    };
    w.reg = Some(reg);
    reg.register(addr, targets, &mut w);
    w
}

struct Entry {
    fd: OwnedFd,
    id: u64,
    /// Registered words and how many sleepers registered each.
    words: Vec<(usize, u32)>,
    /// Set once the task exited: how many times its words were woken.
    woken: Option<u32>,
}

/// After a death, the watcher wakes the task's words again every
/// [`REWAKE_MS`] while sleepers are still registered on them, at most this
/// many times. A sleeper that registered, looked, and had not yet gone to
/// sleep when the first wake came (the word itself does not change: it may
/// be a lock's owner word) is woken by the next one.
const REWAKES: u32 = 100;
const REWAKE_MS: i32 = 1;

struct State {
    ep: OwnedFd,
    entries: HashMap<Target, Entry>,
    /// Targets found dead (no such task, or its id now names a task with
    /// another start time): a stamp never comes back to life, so they are
    /// not opened again at every sleep (a queue's dead participant may stay
    /// in its table long after). At most [`CACHE`]; cleared when full.
    dead: std::collections::HashSet<Target>,
    by_id: HashMap<u64, Target>,
    next_id: u64,
}

struct Registry {
    gen: u32,
    /// [`STARTING`], [`RUNNING`] or [`STOPPED`]: whether the watcher thread
    /// runs. A registry without it wakes nobody, so [`registry`] hands it
    /// out only while its thread runs (else sleepers keep the short
    /// liveness interval instead of trusting a notice that never comes).
    thread: AtomicU8,
    state: Mutex<State>,
}

const STARTING: u8 = 0;
const RUNNING: u8 = 1;
const STOPPED: u8 = 2;

static REGISTRY: AtomicPtr<Registry> = AtomicPtr::new(std::ptr::null_mut());

/// This fork generation's registry, built (with its thread) on first use;
/// `None` if epoll or the thread cannot be had.
fn registry() -> Option<&'static Registry> {
    let gen = super::fork_gen();
    let cur = REGISTRY.load(Ordering::Acquire);
    // SAFETY: a non-null REGISTRY always points at a leaked (never freed)
    // Registry, so the reference is valid for 'static.
    if let Some(r) = unsafe { cur.as_ref() } {
        if r.gen == gen {
            return r.running();
        }
    }
    install(cur, gen)
}

/// Builds a registry for fork generation `gen` and publishes it in place
/// of `cur` (what `REGISTRY` held when the caller looked). If another
/// thread published one first, ours is freed (its epoll instance closed)
/// and theirs is used.
fn install(cur: *mut Registry, gen: u32) -> Option<&'static Registry> {
    let ep = sys::epoll_create().ok()?;
    let ptr = Box::into_raw(Box::new(Registry {
        gen,
        thread: AtomicU8::new(STARTING),
        state: Mutex::new(State {
            ep,
            entries: HashMap::new(),
            dead: std::collections::HashSet::new(),
            by_id: HashMap::new(),
            next_id: 1,
        }),
    }));
    match REGISTRY.compare_exchange(cur, ptr, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => {
            // SAFETY: published: from now on it is never freed.
            let reg: &'static Registry = unsafe { &*ptr };
            // Published before its thread runs: until `RUNNING` is set
            // (never, if the thread cannot be had), `registry` says `None`.
            let ep = reg.state.lock().ok()?.ep.try_clone().ok()?;
            std::thread::Builder::new()
                .name("shmkit-watch".into())
                .spawn(move || {
                    reg.run(ep);
                    reg.thread.store(STOPPED, Ordering::Release);
                })
                .ok()?;
            // A thread that stopped already (its mutex poisoned) stays
            // `STOPPED`.
            let _ =
                reg.thread
                    .compare_exchange(STARTING, RUNNING, Ordering::AcqRel, Ordering::Acquire);
            reg.running()
        }
        // Another thread built it first: use that one, and free ours.
        Err(other) => {
            // SAFETY: `ptr` is the Box made above, never published (the
            // exchange failed) nor handed to a thread: nobody else holds it.
            drop(unsafe { Box::from_raw(ptr) });
            // SAFETY: as above, a non-null REGISTRY is a leaked Registry.
            unsafe { other.as_ref() }
                .filter(|r| r.gen == gen)
                .and_then(Registry::running)
        }
    }
}

impl Registry {
    /// `Some(self)` while the watcher thread runs.
    fn running(&'static self) -> Option<&'static Registry> {
        (self.thread.load(Ordering::Acquire) == RUNNING).then_some(self)
    }

    fn register(&self, addr: usize, targets: &[Target], w: &mut Watch) {
        let Ok(mut st) = self.state.lock() else {
            w.all = false;
            return;
        };
        for &t in targets {
            if st.dead.contains(&t) {
                w.dead = true;
                continue;
            }
            if !st.entries.contains_key(&t) {
                match open(t) {
                    Opened::Fd(fd) => {
                        let id = st.next_id;
                        st.next_id += 1;
                        if sys::epoll_add(&st.ep, &fd, id).is_err() {
                            w.all = false;
                            continue;
                        }
                        st.by_id.insert(id, t);
                        st.entries.insert(
                            t,
                            Entry {
                                fd,
                                id,
                                words: Vec::new(),
                                woken: None,
                            },
                        );
                    }
                    Opened::Dead => {
                        if st.dead.len() >= CACHE {
                            st.dead.clear();
                        }
                        st.dead.insert(t);
                        w.dead = true;
                        continue;
                    }
                    Opened::Unwatched => {
                        w.all = false;
                        continue;
                    }
                }
            }
            let e = st.entries.get_mut(&t).expect("inserted above");
            if e.woken.is_some() {
                // Exited already: look now rather than sleep.
                w.dead = true;
                continue;
            }
            match e.words.iter_mut().find(|(a, _)| *a == addr) {
                Some((_, n)) => *n += 1,
                None => e.words.push((addr, 1)),
            }
            w.keys.push(t);
        }
    }

    fn unregister(&self, addr: usize, keys: &[Target]) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        for t in keys {
            if let Some(e) = st.entries.get_mut(t) {
                if let Some(i) = e.words.iter().position(|(a, _)| *a == addr) {
                    e.words[i].1 -= 1;
                    if e.words[i].1 == 0 {
                        e.words.swap_remove(i);
                    }
                }
            }
        }
        if st.entries.len() > CACHE {
            // Close the pidfds nobody waits on.
            let idle: Vec<Target> = st
                .entries
                .iter()
                .filter(|(_, e)| e.words.is_empty() && e.woken.is_none())
                .map(|(t, _)| *t)
                .collect();
            for t in idle {
                if let Some(e) = st.entries.remove(&t) {
                    st.by_id.remove(&e.id);
                    sys::epoll_del(&st.ep, &e.fd);
                }
            }
        }
    }

    /// The watcher thread: wakes the words of every task that exits.
    fn run(&self, ep: OwnedFd) {
        let mut ready = Vec::new();
        let mut rewaking = false;
        loop {
            sys::epoll_wait(&ep, &mut ready, if rewaking { REWAKE_MS } else { -1 });
            let Ok(mut st) = self.state.lock() else {
                return;
            };
            let st = &mut *st;
            for id in &ready {
                let Some(t) = st.by_id.remove(id) else {
                    continue;
                };
                if let Some(e) = st.entries.get_mut(&t) {
                    sys::epoll_del(&st.ep, &e.fd);
                    e.woken = Some(0);
                }
                DEATHS.fetch_add(1, Ordering::SeqCst);
            }
            rewaking = false;
            st.entries.retain(|_, e| {
                let Some(n) = e.woken.as_mut() else {
                    return true;
                };
                for &(addr, _) in &e.words {
                    // SAFETY: FUTEX_WAKE neither reads nor writes the word;
                    // a word unmapped under a leaked watch (its future was
                    // `mem::forget`ten) is EFAULT, nothing more. Registered
                    // words are 4-byte aligned (they are `Futex`es).
                    unsafe { sys::futex_wake(addr as *const u32, u32::MAX) };
                }
                *n += 1;
                let keep = !e.words.is_empty() && *n < REWAKES;
                rewaking |= keep;
                keep
            });
        }
    }
}

enum Opened {
    Fd(OwnedFd),
    Dead,
    Unwatched,
}

/// Opens a pidfd for `t` and makes sure it is the task the stamp names.
fn open(t: Target) -> Opened {
    let (stamp, thread) = match t {
        Target::Process(s) => (s, false),
        Target::Thread(s) => (s, true),
    };
    if !stamp.start_known() || stamp.tid() == 0 {
        return Opened::Unwatched;
    }
    let fd = match sys::pidfd_open(stamp.tid(), thread) {
        Some(fd) => fd,
        None => {
            // ESRCH (no such task) and every other refusal look alike
            // here: let the liveness check tell them apart.
            return match check(stamp, thread) {
                Liveness::Dead => Opened::Dead,
                _ => Opened::Unwatched,
            };
        }
    };
    // The id may have been reused before the open: the start time says.
    match check(stamp, thread) {
        Liveness::Alive => Opened::Fd(fd),
        Liveness::Dead => Opened::Dead,
        Liveness::Unknown => Opened::Unwatched,
    }
}

fn check(stamp: TaskStamp, thread: bool) -> Liveness {
    if thread {
        super::thread_liveness(stamp.tid(), Some(stamp))
    } else {
        super::liveness(stamp.tid(), Some(stamp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp_of(pid: u32) -> TaskStamp {
        match super::super::probe_process(pid) {
            sys::Probe::Running(start) => TaskStamp::new(pid, start),
            p => panic!("child {pid}: {p:?}"),
        }
    }

    /// A sleeper whose dependency is killed is woken by the watcher (the
    /// wait returns "woken", not "timed out"), and the death epoch moves.
    #[test]
    fn a_watched_death_wakes_the_sleeper() {
        let mut child = std::process::Command::new("sleep")
            .arg("120")
            .spawn()
            .unwrap();
        let stamp = stamp_of(child.id());
        let word = Futex::new(7);
        let before = deaths();
        let w = watch(&word, &[Target::Process(stamp)]);
        assert!(w.all && !w.dead);
        assert_eq!(w.interval(), WATCHED_INTERVAL);
        child.kill().unwrap();
        let until = super::super::now() + Duration::from_secs(60);
        // Woken (true) rather than timed out; a spurious return would also
        // say true, so also check that the epoch moved.
        let mut woken = false;
        while deaths() == before {
            woken = word.wait(7, Some(until));
            assert!(woken, "the watcher did not wake the word within 60 s");
        }
        let _ = woken;
        drop(w);
        child.wait().unwrap();
        // The task is gone now: a new watch reports it dead at once.
        let w = watch(&word, &[Target::Process(stamp)]);
        assert!(w.dead);
    }

    /// A stamp that does not match the task holding the id (a reused pid)
    /// is not watched in its stead: it is dead.
    #[test]
    fn a_reused_id_is_not_watched_for_the_dead_task() {
        let me = super::super::current_process();
        let wrong = TaskStamp::new(me.tid(), me.start().wrapping_add(1) & TaskStamp::START_MASK);
        let word = Futex::new(0);
        let w = watch(&word, &[Target::Process(wrong)]);
        assert!(w.dead, "a stamp with another start time names a dead task");
        let unknown = TaskStamp::new(me.tid(), TaskStamp::START_UNKNOWN);
        let w = watch(&word, &[Target::Process(unknown)]);
        assert!(!w.all && !w.dead, "an unknown start time cannot be watched");
        assert_eq!(w.interval(), super::super::LIVENESS_INTERVAL);
    }

    /// Review: a forked child that drops a watch it inherited (a pending
    /// future's, or a guard of the forking thread) locks the parent
    /// generation's registry mutex, which another parent thread held at
    /// the fork: the child hangs forever. The module says the child leaves
    /// the inherited registry alone ("never locked"). Deterministic: a
    /// parent thread holds the mutex across the fork.
    #[test]
    fn review_a_forked_child_dropping_an_inherited_watch_does_not_hang() {
        let me = super::super::current_process();
        let word: &'static Futex = Box::leak(Box::new(Futex::new(0)));
        let w = watch(word, &[Target::Process(me)]);
        let reg = w.reg.expect("the watcher runs");
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            let g = reg.state.lock().unwrap();
            held_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            drop(g);
        });
        held_rx.recv().unwrap();
        // SAFETY: the child only drops the watch and _exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            drop(w);
            // SAFETY: leave at once.
            unsafe { libc::_exit(0) };
        }
        let ok = super::super::reactor::tests::exited_within(pid, Duration::from_secs(5));
        go_tx.send(()).unwrap();
        t.join().unwrap();
        drop(w);
        assert!(
            ok,
            "the child hung dropping a watch of its parent's registry"
        );
    }

    /// Review: a watch leaked with `mem::forget` (a pending future
    /// forgotten, then its object dropped) leaves its word registered after
    /// the word's mapping is gone. When the target exits, the watcher's
    /// FUTEX_WAKE on it fails with EFAULT, and `sys::futex_wake`'s
    /// `debug_assert!` panics in the watcher thread while it holds the
    /// registry mutex: the watcher stops (poisoned), and from then on no
    /// sleeper of the process is woken by a death (debug builds).
    /// Runs in a forked child (a fresh fork generation, so a fresh
    /// registry and watcher thread), so that a watcher stopped here does
    /// not spoil the other tests of this process.
    #[test]
    fn review_a_leaked_watch_on_an_unmapped_word_does_not_stop_the_watcher() {
        // SAFETY: the child runs the scenario (its own threads, no locks
        // inherited that it takes: a fresh generation) and _exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let ok = std::panic::catch_unwind(leaked_watch_scenario).unwrap_or(false);
            // SAFETY: leave at once.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let t0 = std::time::Instant::now();
        let mut st = 0;
        loop {
            // SAFETY: our own child.
            if unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG) } == pid {
                break;
            }
            if t0.elapsed() > Duration::from_secs(60) {
                // SAFETY: our own child.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                panic!("the child hung");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(
            libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0,
            "the watcher stopped after waking a leaked watch's unmapped word (child status {st:#x})"
        );
    }

    /// Found by fuzzing (`pipe_ops` under LeakSanitizer, 2 process runs in
    /// 100 of its kept input): two threads that go to sleep at once in a
    /// process that has no registry yet both build one; the one whose
    /// exchange lost leaked its registry, epoll instance included.
    /// Deterministic: in a forked child (a fresh fork generation, and no
    /// other test's threads to open descriptors meanwhile), a look taken
    /// before the registry was built is then acted on, as the losing
    /// thread would.
    #[test]
    fn a_registry_that_loses_the_race_to_publish_is_freed() {
        // The fork handler that bumps the child's generation, registered
        // before the fork.
        let _ = super::super::fork_gen();
        // SAFETY: the child runs the scenario (its own threads, no locks
        // inherited that it takes: a fresh generation) and _exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let ok = std::panic::catch_unwind(lost_race_scenario).unwrap_or(false);
            // SAFETY: leave at once.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let t0 = std::time::Instant::now();
        let mut st = 0;
        // SAFETY: our own child (each call below).
        while unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG) } != pid {
            if t0.elapsed() > Duration::from_secs(60) {
                // SAFETY: as above.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                // SAFETY: as above.
                unsafe { libc::waitpid(pid, &mut st, 0) };
                panic!("the child hung");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(
            libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0,
            "the registry that lost the race was not freed (child status {st:#x})"
        );
    }

    /// Whether the registry that lost the exchange was freed: the winner is
    /// used, and no epoll instance is left open by the loser.
    fn lost_race_scenario() -> bool {
        let gen = super::super::fork_gen();
        // What a second thread saw before the first one published.
        let seen = REGISTRY.load(Ordering::Acquire);
        let first = registry().expect("the watcher runs");
        let before = epoll_instances();
        let second = install(seen, gen);
        second.is_some_and(|r| std::ptr::eq(r, first)) && epoll_instances() == before
    }

    /// This process's open epoll instances.
    fn epoll_instances() -> usize {
        std::fs::read_dir("/proc/self/fd")
            .expect("/proc/self/fd")
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|l| l.as_os_str() == "anon_inode:[eventpoll]")
            .count()
    }

    /// Whether the watcher still runs after the scenario.
    fn leaked_watch_scenario() -> bool {
        const LEN: usize = 4096;
        // SAFETY: a fresh anonymous mapping, ours alone.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        // SAFETY: the mapping is page-aligned, zeroed, and a Futex is one
        // atomic u32; it is only used through the watch below until unmapped.
        let word: &'static Futex = unsafe { &*p.cast::<Futex>() };
        let (stamp_tx, stamp_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            stamp_tx.send(super::super::current_stamp()).unwrap();
            let _ = go_rx.recv();
        });
        let target = Target::Thread(stamp_rx.recv().unwrap());
        let w = watch(word, &[target]);
        assert!(w.all && !w.dead, "the thread is watched");
        std::mem::forget(w);
        // SAFETY: nothing of ours uses the word any more (the watch is
        // leaked, as safe code may do).
        assert_eq!(unsafe { libc::munmap(p, LEN) }, 0);
        let before = deaths();
        go_tx.send(()).unwrap();
        t.join().unwrap();
        let t0 = std::time::Instant::now();
        while deaths() == before {
            assert!(t0.elapsed() < Duration::from_secs(30), "death never seen");
            std::thread::sleep(Duration::from_millis(1));
        }
        // Let the watcher finish its pass over the woken words.
        std::thread::sleep(Duration::from_millis(50));
        let other = Futex::new(0);
        let me = super::super::current_process();
        let w = watch(&other, &[Target::Process(me)]);
        w.reg.is_some() && w.all
    }
}
