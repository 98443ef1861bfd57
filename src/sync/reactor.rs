//! The async waiter: one lazily started thread per process that sleeps in
//! `futex_waitv` on the words of every pending future (plus a private
//! control word) and wakes a future's `Waker` when its word changes.
//!
//! # Protocol
//!
//! A future that cannot finish arms its word (the same sleeper
//! registration a blocking call makes: the `SLEEPERS` bit of a `Notify`,
//! `WAITERS` of an event or lock), checks once more, and then registers
//! `(word, value seen, waker)` here. Registering bumps the control word and
//! wakes it, so the thread rebuilds its wait list; so does dropping a
//! registration the thread has not fired (else the thread would stay
//! asleep on the word and could take a lock's single wake-up). When the
//! thread returns from its wait, it wakes, and forgets, the registrations
//! on the word the kernel says woke it (`futex_waitv` returns its index);
//! when the kernel says only that some word no longer held its value, and
//! the control word did not move, it wakes them all (it never reads a
//! registered word itself: a leaked future's word may be unmapped); a
//! return caused by the control word alone wakes nobody. A future
//! re-registers when it is polled again and still cannot finish. The
//! thread also wakes every registration each [`REPOLL`] and after a death
//! the watcher saw, and those beyond the kernel's 127 words at once every
//! 10 ms, so that a future whose word cannot change (a dead peer noticed
//! only by liveness, a lost wake) is polled again. (Waking all of them on
//! every return made more than 127 pending futures wake each other in a
//! loop: each re-registration ended the next wait.)
//!
//! The thread never dereferences a registered word; only the kernel reads
//! them, in `futex_waitv` (a word unmapped meanwhile makes that call fail,
//! and the list is rebuilt).

use std::collections::HashMap;
use std::sync::atomic::{AtomicPtr, AtomicU8};
use std::sync::Mutex;
use std::task::Waker;
use std::time::Duration;

use super::{Futex, Ordering};
use crate::sys;

/// How often the thread wakes every pending future to look again, even
/// when no word changed. Deaths of watched peers wake it at once (see
/// `sync::watch`): this only bounds what nothing signals (a peer whose
/// liveness cannot be watched, a hand-off gone stale).
pub(crate) const REPOLL: Duration = Duration::from_secs(1);

struct Reg {
    addr: usize,
    val: u32,
    waker: Waker,
}

struct State {
    regs: HashMap<u64, Reg>,
    next: u64,
}

struct Reactor {
    gen: u32,
    /// `STARTING`, `RUNNING` or `STOPPED`: registrations are taken only
    /// while the thread runs (else nobody would wake them).
    thread: AtomicU8,
    state: Mutex<State>,
    control: Futex,
}

/// A registration; dropping it removes it (if the thread has not already).
pub(crate) struct Registration {
    reactor: &'static Reactor,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if self.reactor.gen != super::fork_gen() {
            // Inherited across fork(2): the parent generation's reactor,
            // whose mutex a parent thread may have held at the fork, is
            // left alone (its thread does not run here).
            return;
        }
        let removed = match self.reactor.state.lock() {
            Ok(mut st) => st.regs.remove(&self.id).is_some(),
            Err(_) => false,
        };
        if removed {
            // The thread may be asleep on this word still. A lock's unlock
            // wakes one sleeper only: the thread must not be that sleeper
            // once nobody here waits, so it rebuilds its list now.
            self.reactor.kick();
        }
    }
}

static REACTOR: AtomicPtr<Reactor> = AtomicPtr::new(std::ptr::null_mut());

const STARTING: u8 = 0;
const RUNNING: u8 = 1;
const STOPPED: u8 = 2;

/// This fork generation's reactor, built (with its thread) on first use;
/// `None` while or if its thread cannot run. Lock-free, so that a forked
/// child never waits on a mutex a parent thread held at the fork (the
/// child builds its own reactor and leaves the inherited one alone).
fn reactor() -> Option<&'static Reactor> {
    let gen = super::fork_gen();
    let cur = REACTOR.load(Ordering::Acquire);
    // SAFETY: a non-null REACTOR always points at a leaked (never freed)
    // Reactor, so the reference is valid for 'static.
    if let Some(r) = unsafe { cur.as_ref() } {
        if r.gen == gen {
            return r.running();
        }
    }
    let r: &'static Reactor = Box::leak(Box::new(Reactor {
        gen,
        thread: AtomicU8::new(STARTING),
        state: Mutex::new(State {
            regs: HashMap::new(),
            next: 1,
        }),
        control: Futex::new(0),
    }));
    let ptr = r as *const Reactor as *mut Reactor;
    match REACTOR.compare_exchange(cur, ptr, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => {
            std::thread::Builder::new()
                .name("shmkit-async".into())
                .spawn(move || {
                    r.run();
                    r.thread.store(STOPPED, Ordering::Release);
                })
                .ok()?;
            let _ =
                r.thread
                    .compare_exchange(STARTING, RUNNING, Ordering::AcqRel, Ordering::Acquire);
            r.running()
        }
        // Another thread built it first: use that one (ours leaks, unused).
        // SAFETY: as above, a non-null REACTOR is a leaked Reactor.
        Err(other) => unsafe { other.as_ref() }
            .filter(|o| o.gen == gen)
            .and_then(Reactor::running),
    }
}

/// Has `waker` woken once `word` no longer holds `val` (or after
/// [`REPOLL`]). `None` if the waiter thread cannot be had: the caller then
/// wakes its waker itself (a busy poll, documented as the fallback).
pub(crate) fn register(word: &Futex, val: u32, waker: &Waker) -> Option<Registration> {
    let r = reactor()?;
    let id = {
        let mut st = r.state.lock().ok()?;
        let id = st.next;
        st.next += 1;
        st.regs.insert(
            id,
            Reg {
                addr: word.word().as_ptr() as usize,
                val,
                waker: waker.clone(),
            },
        );
        id
    };
    r.kick();
    Some(Registration { reactor: r, id })
}

impl Reactor {
    /// `Some(self)` while the thread runs.
    fn running(&'static self) -> Option<&'static Reactor> {
        (self.thread.load(Ordering::Acquire) == RUNNING).then_some(self)
    }

    /// Has the thread rebuild its wait list (the registrations changed).
    fn kick(&self) {
        self.control.word().fetch_add(1, Ordering::SeqCst);
        self.control.wake_all();
    }

    fn run(&self) {
        // The words slept on: the control word first, then up to 127
        // registrations, with their ids (`ids[i]` for `list[i + 1]`).
        let mut list: Vec<(*const u32, u32)> = Vec::new();
        let mut ids: Vec<u64> = Vec::new();
        let mut deaths = super::deaths();
        let mut last_all = super::now();
        loop {
            let control = self.control.word().load(Ordering::SeqCst);
            let overflow;
            {
                let Ok(st) = self.state.lock() else {
                    return;
                };
                list.clear();
                ids.clear();
                list.push((self.control.word().as_ptr().cast_const(), control));
                for (&id, r) in st.regs.iter().take(sys::FUTEX_WAITV_MAX - 1) {
                    list.push((r.addr as *const u32, r.val));
                    ids.push(id);
                }
                overflow = st.regs.len() > sys::FUTEX_WAITV_MAX - 1;
            }
            let slice = if overflow {
                Duration::from_millis(10)
            } else {
                REPOLL
            };
            let until = super::now().checked_add(slice);
            // SAFETY: the kernel reads the words itself and writes none:
            // the control word is ours ('static); a registered word may be
            // unmapped by now (a future leaked or dropped since the list
            // was built), and then the call fails with EFAULT, touching no
            // memory of ours. Nothing here dereferences a registered word.
            let outcome = unsafe { sys::futex_waitv(&list, until) };
            let outcome = match outcome {
                sys::WaitvOutcome::Unsupported => {
                    // No futex_waitv (before Linux 5.16): poll every 2 ms.
                    std::thread::sleep(Duration::from_millis(2));
                    sys::WaitvOutcome::TimedOut
                }
                o => o,
            };
            // A death the watcher saw: every pending future looks again
            // (its word did not change, the peer's liveness did).
            let d = super::deaths();
            let died = d != deaths;
            deaths = d;
            let now = super::now();
            let Ok(mut st) = self.state.lock() else {
                return;
            };
            let control_moved = self.control.word().load(Ordering::SeqCst) != control;
            // Which registrations to wake. Which word moved is never read
            // from the words themselves (a future leaked with `mem::forget`
            // leaves its registration behind, and its word may be unmapped
            // by now): the kernel says which index woke us, or that a word
            // no longer held its value (then, unless the control word moved,
            // some registered word did: all look again).
            let fire = match outcome {
                _ if died => Fire::All,
                _ if now.saturating_sub(last_all) >= REPOLL => Fire::All,
                sys::WaitvOutcome::Woken(Some(0)) => Fire::None,
                sys::WaitvOutcome::Woken(Some(i)) => match list.get(i) {
                    Some(&(addr, _)) => Fire::Word(addr as usize),
                    None => Fire::All,
                },
                sys::WaitvOutcome::Woken(None) if control_moved => Fire::None,
                sys::WaitvOutcome::Woken(None) => Fire::All,
                // A slice of an overflowing list: those not slept on look.
                _ if overflow => Fire::Unlisted,
                _ => Fire::All,
            };
            let mut wake = Vec::new();
            match fire {
                Fire::None => {}
                Fire::All => {
                    last_all = now;
                    wake.extend(st.regs.drain().map(|(_, r)| r.waker));
                }
                Fire::Word(addr) => {
                    st.regs.retain(|_, r| {
                        if r.addr == addr {
                            wake.push(r.waker.clone());
                            false
                        } else {
                            true
                        }
                    });
                }
                Fire::Unlisted => {
                    st.regs.retain(|id, r| {
                        if ids.contains(id) {
                            true
                        } else {
                            wake.push(r.waker.clone());
                            false
                        }
                    });
                }
            }
            drop(st);
            for w in wake {
                w.wake();
            }
        }
    }
}

/// Which registrations a return of the thread's wait wakes.
enum Fire {
    None,
    All,
    /// Those on the word at this address.
    Word(usize),
    /// Those that were not in the list slept on.
    Unlisted,
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    /// Holds this generation's reactor mutex until the result drops: the
    /// waiter thread and every registration's drop wait meanwhile.
    pub(crate) fn hold_state() -> impl Sized {
        reactor().unwrap().state.lock().unwrap()
    }

    /// Waits for our child `pid` up to `limit`; whether it exited. Kills
    /// (and reaps) it when it did not.
    pub(crate) fn exited_within(pid: libc::pid_t, limit: Duration) -> bool {
        let t0 = Instant::now();
        loop {
            let mut st = 0;
            // SAFETY: plain waitpid on our own child.
            if unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG) } == pid {
                return true;
            }
            if t0.elapsed() > limit {
                // SAFETY: our own child, not reaped yet.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                // SAFETY: as above.
                unsafe { libc::waitpid(pid, &mut st, 0) };
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Review: a forked child that drops a registration it inherited (a
    /// pending future of the forking thread) locks the parent generation's
    /// reactor mutex, which another parent thread held at the fork: the
    /// child hangs forever. Deterministic: a parent thread holds the mutex
    /// across the fork.
    #[test]
    fn review_a_forked_child_dropping_an_inherited_registration_does_not_hang() {
        let word: &'static Futex = Box::leak(Box::new(Futex::new(0)));
        let reg = register(word, 1, Waker::noop()).expect("the waiter thread runs");
        let r = reactor().unwrap();
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            let g = r.state.lock().unwrap();
            held_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            drop(g);
        });
        held_rx.recv().unwrap();
        // SAFETY: the child only drops the registration and _exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            drop(reg);
            // SAFETY: leave at once.
            unsafe { libc::_exit(0) };
        }
        let ok = exited_within(pid, Duration::from_secs(5));
        go_tx.send(()).unwrap();
        t.join().unwrap();
        drop(reg);
        assert!(
            ok,
            "the child hung dropping a registration of its parent's reactor"
        );
    }
}
