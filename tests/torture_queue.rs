//! Queue torture at scale: real processes SIGKILLed at random points, with
//! zero-copy grants held across the kill; handles inherited across `fork`;
//! a dead claimant's pid reused by a live process.
//!
//! - `SHMKIT_TORTURE_TRIALS` sets the trials of each test (small by default,
//!   so that the file stays well under a minute in debug builds);
//! - `SHMKIT_TORTURE_SEED` replays a run (every random choice of a trial is
//!   drawn from the seed and the trial number; the timing of the kills is
//!   the scheduler's, so a replay reproduces the plan, not the interleaving);
//! - `SHMKIT_TORTURE_TRIAL` runs only that trial.
//!
//! Bookkeeping lives in [`Words`]: raw shared words written with atomics, so
//! that it survives the SIGKILL of its writer and cannot wedge by itself.
//! What is checked is exactly what the Queue promises:
//! - every put that returned `Ok` (acknowledged) is delivered exactly once,
//!   except that each consumer killed between taking a message and recording
//!   it may take one message with it (a consumer marks "inside a get" before
//!   each get and clears it once it has recorded the message, so the number
//!   of such losses allowed is known exactly);
//! - a put that had not returned is delivered at most once; nothing that was
//!   never put is delivered; every message is whole;
//! - survivors finish; afterwards the queue is empty, `len` is 0 and it
//!   fills and drains to exactly its capacity.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{
    count_from_env, dispatch, seed_from_env, spawn, wait_for, watchdog, Proc, Rng, Words,
};
use shmkit::{Error, Queue};

#[test]
fn child() {
    dispatch(&[
        ("producer", producer),
        ("consumer", consumer),
        ("forker", forker),
        ("claimant", claimant),
        ("stranger", stranger),
        ("torture_producer", torture_producer),
        ("torture_consumer", torture_consumer),
    ]);
}

const MAX_MSG: usize = 64;
/// The producer number of the end-of-trial sentinels.
const SENTINEL_P: u32 = u32::MAX;
/// How long any one wait of the parent may take before the trial fails as hung.
const HANG: Duration = Duration::from_secs(30);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn mix(p: u32, i: u32) -> u64 {
    Rng::new(u64::from(p) << 32 | u64::from(i), 7).next()
}

/// Writes message `i` of producer `p` into `buf` without allocating (it is
/// also used in a forked child); returns its length.
fn message_into(buf: &mut [u8; MAX_MSG], p: u32, i: u32) -> usize {
    let h = mix(p, i);
    let len = 8 + (h % 57) as usize;
    buf[..4].copy_from_slice(&p.to_le_bytes());
    buf[4..8].copy_from_slice(&i.to_le_bytes());
    for (k, b) in buf[8..len].iter_mut().enumerate() {
        *b = (h >> (k % 8 * 8)) as u8 ^ k as u8;
    }
    len
}

/// Checks that `m` is a whole message; returns its (producer, number).
fn check(m: &[u8]) -> Result<(u32, u32), String> {
    if m.len() < 8 {
        return Err(format!("torn message: {} bytes {m:?}", m.len()));
    }
    let p = u32::from_le_bytes(m[..4].try_into().unwrap());
    let i = u32::from_le_bytes(m[4..8].try_into().unwrap());
    let mut want = [0u8; MAX_MSG];
    let len = message_into(&mut want, p, i);
    if m != &want[..len] {
        return Err(format!("torn or mixed message p {p} i {i}: {m:?}"));
    }
    Ok((p, i))
}

/// Spins, yields or sleeps a random while (holding whatever the caller holds).
fn hold(rng: &mut Rng) {
    match rng.below(4) {
        0 => {}
        1 => std::thread::yield_now(),
        2 => {
            let t = Instant::now();
            let d = Duration::from_micros(rng.below(300));
            while t.elapsed() < d {
                std::hint::spin_loop();
            }
        }
        _ => std::thread::sleep(Duration::from_micros(200 + rng.below(2_000))),
    }
}

// ---- the MPMC torture ---------------------------------------------------

/// Producer words, per producer: acknowledged count, holding a grant, done.
const PW: usize = 4;
const P_ACKED: usize = 0;
const P_HOLDING: usize = 1;
const P_DONE: usize = 2;

/// Consumer words: count of entries, inside a get, error, holding a
/// `GetGrant`, then the entries (`p << 32 | i`, plus one).
const C_COUNT: usize = 0;
const C_IN_GET: usize = 1;
const C_ERR: usize = 2;
const C_HOLDING: usize = 3;
const C_ENTRIES: usize = 4;

fn producer(args: &[String]) {
    let q = Queue::open(&args[0]).unwrap();
    let w = Words::open(&args[1]);
    let p: u32 = args[2].parse().unwrap();
    let n: u32 = args[3].parse().unwrap();
    let seed: u64 = args[4].parse().unwrap();
    let mut rng = Rng::new(seed, 1_000 + u64::from(p));
    let base = p as usize * PW;
    let mut buf = [0u8; MAX_MSG];
    for i in 0..n {
        let len = message_into(&mut buf, p, i);
        let m = &buf[..len];
        let r = match rng.below(7) {
            0 | 1 => q.put(m),
            2 => loop {
                match q.try_put(m) {
                    Err(Error::Full { .. }) => std::thread::yield_now(),
                    r => break r,
                }
            },
            3 => loop {
                match q.put_timeout(m, ms(2)) {
                    Err(Error::Timeout { .. }) => {}
                    r => break r,
                }
            },
            4 => q.reserve(len).map(|mut g| {
                g.copy_from_slice(m);
                g.commit().unwrap();
            }),
            _ => q.reserve(len).map(|mut g| {
                // Half written, then held: a kill here abandons the grant.
                g[..len / 2].copy_from_slice(&m[..len / 2]);
                w.set(base + P_HOLDING, 1);
                hold(&mut rng);
                g[len / 2..].copy_from_slice(&m[len / 2..]);
                w.set(base + P_HOLDING, 0);
                g.commit().unwrap();
            }),
        };
        match r {
            Ok(()) => w.set(base + P_ACKED, u64::from(i) + 1),
            Err(e) => panic!("producer {p}: put {i}: {e}"),
        }
    }
    w.set(base + P_DONE, 1);
}

fn consumer(args: &[String]) {
    let q = Queue::open(&args[0]).unwrap();
    let w = Words::open(&args[1]);
    let seed: u64 = args[2].parse().unwrap();
    let mut rng = Rng::new(seed, 2_000);
    let fail = |code: u64, what: String| -> ! {
        w.set(C_ERR, code);
        panic!("consumer: {what}");
    };
    let record = |(p, i): (u32, u32)| {
        let n = w.get(C_COUNT) as usize;
        w.set(C_ENTRIES + n, (u64::from(p) << 32 | u64::from(i)) + 1);
        w.set(C_COUNT, n as u64 + 1);
    };
    let mut buf = [0u8; MAX_MSG];
    loop {
        w.set(C_IN_GET, 1);
        let got = match rng.below(7) {
            0 => q.get().map(|m| check(&m)),
            1 => loop {
                match q.get_timeout(ms(2)) {
                    Err(Error::Timeout { .. }) => {}
                    r => break r.map(|m| check(&m)),
                }
            },
            2 => loop {
                match q.try_get() {
                    Err(Error::Empty { .. }) => std::thread::yield_now(),
                    r => break r.map(|m| check(&m)),
                }
            },
            3 => q.get_into(&mut buf).map(|n| check(&buf[..n])),
            mode => match q.get_ref() {
                Ok(g) => {
                    let id = check(&g).unwrap_or_else(|e| fail(1, e));
                    if id.0 == SENTINEL_P {
                        return;
                    }
                    // Recorded while the slot is still held: a kill from
                    // here on must neither lose nor repeat the message.
                    record(id);
                    w.set(C_IN_GET, 0);
                    if mode >= 5 {
                        w.set(C_HOLDING, 1);
                        hold(&mut rng);
                        w.set(C_HOLDING, 0);
                    }
                    drop(g);
                    continue;
                }
                Err(e) => Err(e),
            },
        };
        match got {
            Ok(Ok(id)) if id.0 == SENTINEL_P => return,
            Ok(Ok(id)) => {
                record(id);
                w.set(C_IN_GET, 0);
            }
            Ok(Err(e)) => fail(1, e),
            Err(e) => fail(2, format!("get: {e}")),
        }
    }
}

#[derive(Default, Debug)]
struct QStats {
    trials: u64,
    kills: u64,
    kills_producer: u64,
    kills_producer_holding_grant: u64,
    kills_consumer: u64,
    kills_consumer_inside_get: u64,
    kills_consumer_holding_grant: u64,
    messages_checked: u64,
    acked: u64,
    lost_with_dead_consumer: u64,
    unacked_delivered: u64,
}

struct Cons {
    w: Words,
    proc: Option<Proc>,
}

/// Whether the queue fills and drains to exactly its capacity, nothing else
/// running. Leaves it empty.
fn queue_works(q: &Queue, cap: usize) -> Result<(), String> {
    let len = q.len();
    if len != 0 || !q.is_empty() {
        return Err(format!("len {len} after a full drain"));
    }
    match q.try_get() {
        Err(Error::Empty { .. }) => {}
        other => return Err(format!("try_get on a drained queue: {other:?}")),
    }
    let mut buf = [0u8; MAX_MSG];
    for i in 0..cap as u32 {
        let len = message_into(&mut buf, 9_999, i);
        q.try_put(&buf[..len])
            .map_err(|e| format!("try_put {i} of {cap} afterwards: {e} (len {})", q.len()))?;
    }
    if q.len() != cap || !q.is_full() {
        return Err(format!(
            "len {} is_full {} after {cap} puts",
            q.len(),
            q.is_full()
        ));
    }
    match q.try_put(b"one too many") {
        Err(Error::Full { .. }) => {}
        other => return Err(format!("try_put on a full queue: {other:?}")),
    }
    for i in 0..cap as u32 {
        let m = q
            .try_get()
            .map_err(|e| format!("try_get {i} of {cap} afterwards: {e}"))?;
        if check(&m)? != (9_999, i) {
            return Err(format!("afterwards, got {:?} for {i}", check(&m)));
        }
    }
    let len = q.len();
    if len != 0 || !q.is_empty() {
        return Err(format!("len {len} after draining again"));
    }
    Ok(())
}

fn queue_trial(seed: u64, trial: u64, st: &mut QStats) -> Result<(), String> {
    let mut rng = Rng::new(seed, trial);
    let cap = 1 + rng.below(8) as usize;
    let np = 1 + rng.below(3) as usize;
    let nc = 1 + rng.below(3) as usize;
    let per = 200 + rng.below(400) as u32;
    let nkills = 1 + rng.below(3);
    let params = format!("cap {cap}, {np} producers x {per}, {nc} consumers, {nkills} kills");
    let err = |what: String| format!("{params}: {what}");

    let q = Queue::create_unique(cap, MAX_MSG).unwrap();
    let pw = Words::create(np * PW);
    let log_len = C_ENTRIES + np * per as usize + 16;
    let spawn_consumer = |rng: &mut Rng| {
        let w = Words::create(log_len);
        let proc = spawn("consumer", &[q.name(), w.name(), &rng.next().to_string()]);
        Cons {
            w,
            proc: Some(proc),
        }
    };
    let mut cons: Vec<Cons> = (0..nc).map(|_| spawn_consumer(&mut rng)).collect();
    let mut prods: Vec<Option<Proc>> = (0..np)
        .map(|p| {
            Some(spawn(
                "producer",
                &[
                    q.name(),
                    pw.name(),
                    &p.to_string(),
                    &per.to_string(),
                    &rng.next().to_string(),
                ],
            ))
        })
        .collect();
    if !wait_for(HANG, || (0..np).any(|p| pw.get(p * PW + P_ACKED) > 0)) {
        return Err(err("no put was acknowledged".into()));
    }
    let mut allowed_losses = 0u64;
    for _ in 0..nkills {
        std::thread::sleep(Duration::from_micros(rng.below(3_000)));
        let kind = rng.below(4);
        if kind < 2 {
            let alive: Vec<usize> = (0..np)
                .filter(|&p| prods[p].is_some() && pw.get(p * PW + P_DONE) == 0)
                .collect();
            if alive.is_empty() {
                continue;
            }
            let mut victim = alive[rng.below(alive.len() as u64) as usize];
            if kind == 1 {
                // Wait (a while) for a producer holding a half-written grant.
                wait_for(ms(500), || {
                    alive.iter().any(|&p| {
                        let h = pw.get(p * PW + P_HOLDING) == 1;
                        if h {
                            victim = p;
                        }
                        h
                    })
                });
            }
            let mut proc = prods[victim].take().unwrap();
            if proc.has_exited() {
                let code = proc.wait_deadline(HANG).map_err(&err)?;
                if code != 0 {
                    return Err(err(format!("producer {victim} failed with code {code}")));
                }
                continue;
            }
            proc.kill();
            st.kills += 1;
            st.kills_producer += 1;
            if pw.get(victim * PW + P_HOLDING) == 1 {
                st.kills_producer_holding_grant += 1;
            }
        } else {
            let alive: Vec<usize> = (0..cons.len())
                .filter(|&c| cons[c].proc.is_some())
                .collect();
            let mut victim = alive[rng.below(alive.len() as u64) as usize];
            if kind == 3 {
                wait_for(ms(500), || {
                    alive.iter().any(|&c| {
                        let h = cons[c].w.get(C_HOLDING) == 1;
                        if h {
                            victim = c;
                        }
                        h
                    })
                });
            }
            let mut proc = cons[victim].proc.take().unwrap();
            if proc.has_exited() {
                let code = proc.wait_deadline(HANG);
                return Err(err(format!(
                    "consumer {victim} exited before the end: {code:?}, err word {}",
                    cons[victim].w.get(C_ERR)
                )));
            }
            proc.kill();
            st.kills += 1;
            st.kills_consumer += 1;
            if cons[victim].w.get(C_IN_GET) == 1 {
                allowed_losses += 1;
                st.kills_consumer_inside_get += 1;
            }
            if cons[victim].w.get(C_HOLDING) == 1 {
                st.kills_consumer_holding_grant += 1;
            }
            // A fresh consumer takes the dead one's place.
            cons.push(spawn_consumer(&mut rng));
        }
    }
    for (p, proc) in prods.iter_mut().enumerate() {
        if let Some(proc) = proc.take() {
            let code = proc.wait_deadline(HANG).map_err(|e| {
                err(format!(
                    "producer {p} (acked {}/{per}): {e}",
                    pw.get(p * PW + P_ACKED)
                ))
            })?;
            if code != 0 {
                return Err(err(format!("producer {p} failed with code {code}")));
            }
        }
    }
    // Every producer is done or dead: one sentinel per surviving consumer.
    let survivors = cons.iter().filter(|c| c.proc.is_some()).count();
    let mut buf = [0u8; MAX_MSG];
    for s in 0..survivors as u32 {
        let len = message_into(&mut buf, SENTINEL_P, s);
        q.put_timeout(&buf[..len], HANG)
            .map_err(|e| err(format!("queue wedged: sentinel put: {e} (len {})", q.len())))?;
    }
    for (c, co) in cons.iter_mut().enumerate() {
        if let Some(proc) = co.proc.take() {
            let code = proc.wait_deadline(HANG).map_err(|e| {
                err(format!(
                    "queue wedged? consumer {c}: {e} (len {}, logged {})",
                    q.len(),
                    co.w.get(C_COUNT)
                ))
            })?;
            if code != 0 {
                return Err(err(format!(
                    "consumer {c} failed with code {code}, err word {}",
                    co.w.get(C_ERR)
                )));
            }
        }
    }
    // The books.
    let mut seen: HashMap<(u32, u32), usize> = HashMap::new();
    for (c, co) in cons.iter().enumerate() {
        if co.w.get(C_ERR) != 0 {
            return Err(err(format!(
                "consumer {c} saw a bad message or error (code {})",
                co.w.get(C_ERR)
            )));
        }
        for k in 0..co.w.get(C_COUNT) as usize {
            let e = co.w.get(C_ENTRIES + k) - 1;
            let (p, i) = ((e >> 32) as u32, e as u32);
            st.messages_checked += 1;
            if let Some(c0) = seen.insert((p, i), c) {
                return Err(err(format!(
                    "message p {p} i {i} delivered twice (consumers {c0} and {c})"
                )));
            }
        }
    }
    let mut missing = Vec::new();
    for p in 0..np as u32 {
        let acked = pw.get(p as usize * PW + P_ACKED) as u32;
        st.acked += u64::from(acked);
        for i in 0..per {
            let got = seen.remove(&(p, i)).is_some();
            if i < acked && !got {
                missing.push((p, i));
            } else if i == acked && got {
                st.unacked_delivered += 1;
            } else if i > acked && got {
                return Err(err(format!(
                    "message p {p} i {i} delivered but never put (acked {acked})"
                )));
            }
        }
    }
    if let Some(((p, i), _)) = seen.into_iter().next() {
        return Err(err(format!("invented message p {p} i {i}")));
    }
    if missing.len() as u64 > allowed_losses {
        return Err(err(format!(
            "acknowledged messages lost: {missing:?}; only {allowed_losses} consumers \
             were killed inside a get"
        )));
    }
    st.lost_with_dead_consumer += missing.len() as u64;
    queue_works(&q, cap).map_err(err)?;
    st.trials += 1;
    Ok(())
}

/// Runs `trials` trials of `f` (or only `SHMKIT_TORTURE_TRIAL`), printing
/// each failure with its seed and trial; stops after a few failures.
fn run_trials(
    test: &str,
    default_trials: u64,
    mut f: impl FnMut(u64, u64) -> Result<(), String>,
) -> (u64, Vec<String>) {
    let trials = count_from_env("SHMKIT_TORTURE_TRIALS", default_trials);
    let seed = seed_from_env("SHMKIT_TORTURE_SEED", test);
    let only = std::env::var("SHMKIT_TORTURE_TRIAL")
        .ok()
        .map(|s| s.parse::<u64>().unwrap());
    let mut failures = Vec::new();
    for trial in 0..trials {
        if only.is_some_and(|t| t != trial) {
            continue;
        }
        if let Err(e) = f(seed, trial) {
            let line = format!(
                "{test}: FAILED trial {trial} (SHMKIT_TORTURE_SEED={seed} SHMKIT_TORTURE_TRIAL={trial}): {e}"
            );
            eprintln!("{line}");
            failures.push(line);
            if failures.len() >= 3 {
                break;
            }
        }
    }
    (seed, failures)
}

#[test]
fn queue_sigkill_torture() {
    let _w = watchdog(Duration::from_secs(3_600 * 4));
    let t0 = Instant::now();
    let mut st = QStats::default();
    let (seed, failures) = run_trials("queue_sigkill_torture", 40, |seed, trial| {
        queue_trial(seed, trial, &mut st)
    });
    eprintln!(
        "queue_sigkill_torture summary: seed {seed}, {} trials passed, {} failed, {:.1} s; {st:?}; \
         recovered claims (kills holding a grant or inside a get) {}",
        st.trials,
        failures.len(),
        t0.elapsed().as_secs_f64(),
        st.kills_producer_holding_grant + st.kills_consumer_inside_get + st.kills_consumer_holding_grant,
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---- handles inherited across fork ---------------------------------------

/// Forker words: trials passed, kills, messages checked, failures, kills
/// while the child held a grant.
const F_PASSED: usize = 0;
const F_KILLS: usize = 1;
const F_MESSAGES: usize = 2;
const F_FAILED: usize = 3;
const F_HOLDING_KILLS: usize = 4;

/// In a forked child: puts messages of producer 7 through the parent's
/// handle (no allocation, no panic), and at `hold_at` reserves a grant and
/// holds it until killed.
fn forked_producer(q: &Queue, w: &Words, hold_at: u32, seed: u64) -> ! {
    // SAFETY: async-signal-safe syscalls only.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    let mut rng = Rng::new(seed, 0);
    let mut buf = [0u8; MAX_MSG];
    let mut i = 0u32;
    loop {
        let len = message_into(&mut buf, 7, i);
        let m = &buf[..len];
        if i == hold_at {
            if let Ok(mut g) = q.reserve(len) {
                g[..len / 2].copy_from_slice(&m[..len / 2]);
                w.set(1, 1);
                loop {
                    // SAFETY: a plain syscall.
                    unsafe { libc::sched_yield() };
                }
            }
            // SAFETY: exits without running anything of the parent's.
            unsafe { libc::_exit(3) };
        }
        let r = if rng.one_in(2) {
            q.put(m)
        } else {
            q.reserve(len).map(|mut g| {
                g.copy_from_slice(m);
                g.commit().unwrap();
            })
        };
        if r.is_err() {
            // SAFETY: as above.
            unsafe { libc::_exit(3) };
        }
        w.set(0, u64::from(i) + 1);
        i += 1;
    }
}

fn fork_trial(seed: u64, trial: u64, stats: &Words) -> Result<(), String> {
    let mut rng = Rng::new(seed, 50_000 + trial);
    let cap = 1 + rng.below(4) as usize;
    let hold_at = if rng.one_in(3) {
        u32::MAX
    } else {
        rng.below(100) as u32
    };
    let kill_after = Duration::from_micros(rng.below(3_000));
    let child_seed = rng.next();
    let params = format!("cap {cap}, hold at {hold_at}, kill after {kill_after:?}");
    let err = |what: String| format!("{params}: {what}");
    let q = Queue::create_unique(cap, MAX_MSG).unwrap();
    let w = Words::create(4);
    // SAFETY: the child only runs `forked_producer`, which uses memory
    // mapped before the fork, atomics and syscalls, and never returns.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        forked_producer(&q, &w, hold_at, child_seed);
    }
    let mut got = vec![0u8; 1 << 16];
    let mut take = |m: &[u8]| -> Result<(), String> {
        let (p, i) = check(m)?;
        if p != 7 || i as usize >= got.len() {
            return Err(format!("unexpected message p {p} i {i}"));
        }
        got[i as usize] += 1;
        Ok(())
    };
    let t0 = Instant::now();
    while t0.elapsed() < kill_after || (hold_at != u32::MAX && w.get(1) == 0 && t0.elapsed() < HANG)
    {
        match q.get_timeout(ms(1)) {
            Ok(m) => take(&m).map_err(&err)?,
            Err(Error::Timeout { .. }) => {}
            Err(e) => return Err(err(format!("get: {e}"))),
        }
    }
    let holding = w.get(1) == 1;
    // SAFETY: plain syscalls on our own child.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
        if !(libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL) {
            return Err(err(format!(
                "forked child ended otherwise: status {status:#x}"
            )));
        }
    }
    stats.add(F_KILLS, 1);
    if holding {
        stats.add(F_HOLDING_KILLS, 1);
    }
    let acked = w.get(0) as u32;
    // Drain what the child sent.
    loop {
        match q.get_timeout(ms(50)) {
            Ok(m) => take(&m).map_err(&err)?,
            Err(Error::Timeout { .. }) => break,
            Err(e) => return Err(err(format!("drain: {e}"))),
        }
    }
    for (i, &n) in got.iter().enumerate() {
        if n > 1 {
            return Err(err(format!("message {i} delivered {n} times")));
        }
        if (i as u32) < acked && n == 0 {
            return Err(err(format!(
                "acknowledged message {i} of {acked} never delivered (len {})",
                q.len()
            )));
        }
        if i as u32 > acked && n != 0 {
            return Err(err(format!(
                "message {i} delivered, never put (acked {acked})"
            )));
        }
    }
    stats.add(F_MESSAGES, u64::from(acked));
    // The parent lives on and keeps using the queue: a dead child's claim
    // under the parent's pid must not wedge it.
    let mut buf = [0u8; MAX_MSG];
    for i in 0..2 * cap as u32 + 1 {
        let len = message_into(&mut buf, 8, i);
        q.put_timeout(&buf[..len], ms(2_000)).map_err(|e| {
            err(format!(
                "queue wedged after the forked child died (holding a grant: {holding}): put {i}: {e}"
            ))
        })?;
        let m = q.get_timeout(ms(2_000)).map_err(|e| {
            err(format!(
                "queue wedged after the forked child died (holding a grant: {holding}): get {i}: {e}, len {}",
                q.len()
            ))
        })?;
        if check(&m).map_err(&err)? != (8, i) {
            return Err(err(format!(
                "got {:?} for message {i} afterwards",
                check(&m)
            )));
        }
    }
    queue_works(&q, cap).map_err(err)
}

/// Runs the fork trials in its own process (the test harness is
/// multithreaded; this process forks from its one test thread).
fn forker(args: &[String]) {
    let stats = Words::open(&args[0]);
    let seed: u64 = args[1].parse().unwrap();
    let trials: u64 = args[2].parse().unwrap();
    let only: Option<u64> = args[3].parse().ok();
    for trial in 0..trials {
        if only.is_some_and(|t| t != trial) {
            continue;
        }
        match fork_trial(seed, trial, &stats) {
            Ok(()) => {
                stats.add(F_PASSED, 1);
            }
            Err(e) => {
                eprintln!(
                    "queue_fork_inherited_handle: FAILED trial {trial} \
                     (SHMKIT_TORTURE_SEED={seed} SHMKIT_TORTURE_TRIAL={trial}): {e}"
                );
                if stats.add(F_FAILED, 1) >= 2 {
                    return;
                }
            }
        }
    }
}

#[test]
fn queue_fork_inherited_handle_killed_mid_put() {
    let trials = count_from_env("SHMKIT_TORTURE_TRIALS", 40);
    let seed = seed_from_env("SHMKIT_TORTURE_SEED", "queue_fork_inherited_handle");
    let only = std::env::var("SHMKIT_TORTURE_TRIAL").unwrap_or_default();
    let _w = watchdog(Duration::from_secs(3_600 * 4));
    let t0 = Instant::now();
    let stats = Words::create(8);
    let f = spawn(
        "forker",
        &[stats.name(), &seed.to_string(), &trials.to_string(), &only],
    );
    let code = f.wait_deadline(Duration::from_secs(60 + trials * 30));
    eprintln!(
        "queue_fork_inherited_handle summary: seed {seed}, {} trials passed, {} failed, \
         {} kills ({} holding a grant), {} acknowledged messages checked, {:.1} s",
        stats.get(F_PASSED),
        stats.get(F_FAILED),
        stats.get(F_KILLS),
        stats.get(F_HOLDING_KILLS),
        stats.get(F_MESSAGES),
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(code, Ok(0), "forker process");
    assert_eq!(stats.get(F_FAILED), 0, "failed trials: see above");
}

// ---- a dead claimant's pid reused ----------------------------------------

/// Pid-reuse words: claimant holds, stranger's pid, stranger may start,
/// stranger holds, commit now, committed, exit now.
const R_A_HOLDS: usize = 0;
const R_B_PID: usize = 1;
const R_B_GO: usize = 2;
const R_B_HOLDS: usize = 3;
const R_B_COMMIT: usize = 4;
const R_B_COMMITTED: usize = 5;
const R_B_EXIT: usize = 6;

fn poll_word(w: &Words, i: usize) {
    assert!(
        wait_for(HANG, || w.get(i) != 0),
        "word {i} was never set: the test parent is gone or hung"
    );
}

/// Opens the queue, reserves a grant, half-fills it and holds it until killed.
fn claimant(args: &[String]) {
    let q = Queue::open(&args[0]).unwrap();
    let w = Words::open(&args[1]);
    let mut g = q.reserve(8).unwrap();
    g[..4].copy_from_slice(b"AAAA");
    w.set(R_A_HOLDS, 1);
    loop {
        std::thread::sleep(ms(1_000));
    }
}

/// A process given a dead claimant's pid: waits for the go, then (if told
/// to use the queue) opens it and holds a grant of its own until told to
/// commit it, and stays alive until told to exit.
fn stranger(args: &[String]) {
    let w = Words::open(&args[1]);
    let uses_queue = args[2] == "1";
    w.set(R_B_PID, u64::from(std::process::id()));
    poll_word(&w, R_B_GO);
    if uses_queue {
        let q = Queue::open(&args[0]).unwrap();
        let mut g = q.reserve(8).unwrap();
        g.copy_from_slice(b"BBBBBBBB");
        w.set(R_B_HOLDS, 1);
        poll_word(&w, R_B_COMMIT);
        g.commit().unwrap();
        w.set(R_B_COMMITTED, 1);
        poll_word(&w, R_B_EXIT);
    } else {
        w.set(R_B_HOLDS, 1);
        poll_word(&w, R_B_EXIT);
    }
}

const NS_LAST_PID: &str = "/proc/sys/kernel/ns_last_pid";

enum Reuse {
    Done,
    Control,
    Skipped(String),
}

fn pid_reuse_trial(seed: u64, trial: u64) -> Result<Reuse, String> {
    let mut rng = Rng::new(seed, 90_000 + trial);
    let uses_queue = !rng.one_in(3);
    let cap = 4;
    let q = Queue::create_unique(cap, MAX_MSG).unwrap();
    let w = Words::create(8);
    let a = spawn("claimant", &[q.name(), w.name(), ""]);
    if !wait_for(HANG, || w.get(R_A_HOLDS) == 1) {
        return Err("claimant never held its grant".into());
    }
    let pid_a = a.pid();
    a.kill();
    // One trial in four is the control: the same steps without a reused
    // pid, which shows that the steps themselves are sound.
    let reuse = !rng.one_in(4);
    if !reuse {
        let p = spawn(
            "stranger",
            &[q.name(), w.name(), if uses_queue { "1" } else { "0" }],
        );
        return pid_reuse_rest(&q, &w, p, pid_a, uses_queue, cap, false);
    }
    let mut b = None;
    for _attempt in 0..200 {
        if let Err(e) = std::fs::write(NS_LAST_PID, (pid_a - 1).to_string()) {
            return Ok(Reuse::Skipped(format!("cannot write {NS_LAST_PID}: {e}")));
        }
        let p = spawn(
            "stranger",
            &[q.name(), w.name(), if uses_queue { "1" } else { "0" }],
        );
        if p.pid() == pid_a {
            b = Some(p);
            break;
        }
        // Another process took the pid first; this one never touched the
        // queue (it waits for the go). Free the pid and try again.
        p.kill();
    }
    let Some(b) = b else {
        return Ok(Reuse::Skipped(format!(
            "pid {pid_a} was taken by others 200 times"
        )));
    };
    pid_reuse_rest(&q, &w, b, pid_a, uses_queue, cap, true)
}

fn pid_reuse_rest(
    q: &Queue,
    w: &Words,
    b: Proc,
    pid_a: u32,
    uses_queue: bool,
    cap: usize,
    reused: bool,
) -> Result<Reuse, String> {
    let pid_b = b.pid();
    let err = |what: String| {
        format!("stranger uses the queue: {uses_queue}, pid reused: {reused}: {what}")
    };
    if !wait_for(HANG, || w.get(R_B_PID) == u64::from(pid_b)) {
        return Err(err("stranger never started".into()));
    }
    w.set(R_B_GO, 1);
    if !wait_for(HANG, || w.get(R_B_HOLDS) == 1) {
        return Err(err(
            "stranger never held its grant (its reserve hung?)".into()
        ));
    }
    // Claims now: the dead claimant's at 0, the live stranger's at 1 (if it
    // uses the queue), then ours.
    let mine: Vec<&[u8]> = vec![b"T1", b"T2"];
    for m in &mine {
        q.put_timeout(m, HANG)
            .map_err(|e| err(format!("put {m:?}: {e}")))?;
    }
    let mut got: Vec<Vec<u8>> = Vec::new();
    if uses_queue {
        // A consumer meets the live stranger's claim: it may wait for it, but
        // must not take it from it.
        match q.get_timeout(ms(300)) {
            Ok(m) => got.push(m),
            Err(Error::Timeout { .. }) => {}
            Err(e) => return Err(err(format!("get while the stranger holds: {e}"))),
        }
        if got.iter().any(|m| m.starts_with(b"BB")) {
            return Err(err(format!(
                "robbed: the live stranger's uncommitted grant was delivered: {got:?}"
            )));
        }
        w.set(R_B_COMMIT, 1);
        if !wait_for(HANG, || w.get(R_B_COMMITTED) == 1) {
            return Err(err("the stranger's commit did not return".into()));
        }
    }
    let want = if uses_queue { 3 } else { 2 };
    while got.len() < want {
        match q.get_timeout(ms(3_000)) {
            Ok(m) => got.push(m),
            Err(e) => {
                return Err(err(format!(
                    "queue wedged behind the dead claim of pid {pid_a} (the live \
                     stranger's pid is {pid_b}): got {got:?}, then {e}; len {}",
                    q.len()
                )))
            }
        }
    }
    got.sort();
    let mut expect: Vec<Vec<u8>> = mine.iter().map(|m| m.to_vec()).collect();
    if uses_queue {
        expect.push(b"BBBBBBBB".to_vec());
    }
    expect.sort();
    if got != expect {
        return Err(err(format!("delivered {got:?}, expected {expect:?}")));
    }
    match q.try_get() {
        Err(Error::Empty { .. }) => {}
        other => return Err(err(format!("after all: {other:?}"))),
    }
    queue_works(q, cap).map_err(&err)?;
    w.set(R_B_EXIT, 1);
    let code = b.wait_deadline(HANG).map_err(&err)?;
    if code != 0 {
        return Err(err(format!("stranger failed with code {code}")));
    }
    Ok(if reused { Reuse::Done } else { Reuse::Control })
}

#[test]
fn queue_reused_pid_stale_claim_recovered() {
    let _w = watchdog(Duration::from_secs(3_600 * 4));
    let t0 = Instant::now();
    let (mut done, mut controls, mut skipped) = (0u64, 0u64, Vec::new());
    let (seed, failures) = run_trials("queue_reused_pid", 10, |seed, trial| {
        match pid_reuse_trial(seed, trial)? {
            Reuse::Done => done += 1,
            Reuse::Control => controls += 1,
            Reuse::Skipped(why) => skipped.push(why),
        }
        Ok(())
    });
    if let Some(why) = skipped.first() {
        eprintln!("queue_reused_pid: skipped {} trials: {why}", skipped.len());
    }
    eprintln!(
        "queue_reused_pid summary: seed {seed}, {done} trials with a reused pid passed, \
         {controls} control trials (no reuse) passed, {} failed, {} skipped, \
         {done} stale claims recovered under a reused pid, {:.1} s",
        failures.len(),
        skipped.len(),
        t0.elapsed().as_secs_f64()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---- the original crash torture (moved from tests/queue.rs) --------------

/// Messages per producer per trial.
const T_PER: u64 = 3_000;

fn old_message(seq: u64) -> Vec<u8> {
    let len = 8 + (seq % 57) as usize;
    let mut m = seq.to_le_bytes().to_vec();
    m.extend((8..len).map(|i| (seq as u8).wrapping_mul(31).wrapping_add(i as u8)));
    m
}

fn check_old_message(m: &[u8]) -> u64 {
    let seq = u64::from_le_bytes(m[..8].try_into().expect("torn: shorter than 8 bytes"));
    assert_eq!(
        m,
        old_message(seq).as_slice(),
        "torn or mixed message for seq {seq}"
    );
    seq
}

fn torture_producer(args: &[String]) {
    let q = Queue::open(&args[0]).unwrap();
    let acked = shmkit::Value::<u64>::open(&args[1]).unwrap();
    let first: u64 = args[2].parse().unwrap();
    for seq in first..first + T_PER {
        match q.put(&old_message(seq)) {
            Ok(()) => {
                acked.fetch_add(1);
            }
            Err(Error::Closed { .. }) => return,
            Err(e) => panic!("put: {e}"),
        }
    }
}

fn torture_consumer(args: &[String]) {
    let q = Queue::open(&args[0]).unwrap();
    let received = shmkit::Array::<u8>::open(&args[1]).unwrap();
    let started = shmkit::Event::open(&args[2]).unwrap();
    started.set();
    loop {
        match q.get() {
            Ok(m) => {
                let seq = check_old_message(&m) as usize;
                let mut g = received.lock().unwrap();
                g[seq] = g[seq].saturating_add(1);
            }
            Err(Error::Closed { .. }) => return,
            Err(e) => panic!("get: {e}"),
        }
    }
}

/// The first crash torture: plain puts and gets, one kill per trial, the
/// loss bound counted per dead consumer.
#[test]
fn crash_torture_acknowledged_puts_arrive_exactly_once() {
    use shmkit::{Array, Event, Value};
    let _w = watchdog(Duration::from_secs(600));
    let seed = seed_from_env("SHMKIT_TORTURE_SEED", "crash_torture");
    let mut rng = Rng::new(seed, 0);
    let trials = count_from_env("SHMKIT_TORTURE_TRIALS", 20);
    let mut killed = HashMap::from([("producer", 0), ("producer mid-stream", 0), ("consumer", 0)]);
    for trial in 0..trials {
        let cap = 1 + (rng.next() % 8) as usize;
        let q = Queue::create_unique(cap, 64).unwrap();
        let acked: Vec<_> = (0..2)
            .map(|_| Value::<u64>::create_unique(0).unwrap())
            .collect();
        let received: Vec<_> = (0..2)
            .map(|_| Array::<u8>::create_unique(2 * T_PER as usize, 0).unwrap())
            .collect();
        let started: Vec<_> = (0..2).map(|_| Event::create_unique().unwrap()).collect();
        let mut consumers: Vec<_> = (0..2)
            .map(|c| {
                Some(spawn(
                    "torture_consumer",
                    &[q.name(), received[c].name(), started[c].name()],
                ))
            })
            .collect();
        let mut producers: Vec<_> = (0..2)
            .map(|p| {
                let first = (p as u64 * T_PER).to_string();
                Some(spawn(
                    "torture_producer",
                    &[q.name(), acked[p].name(), &first],
                ))
            })
            .collect();
        for s in &started {
            assert!(s.wait_timeout(Duration::from_secs(30)).unwrap());
        }
        // Once messages flow, let them run a random while, then kill one
        // producer and/or one consumer.
        assert!(wait_for(Duration::from_secs(30), || acked
            .iter()
            .all(|a| a.load() > 0)));
        std::thread::sleep(Duration::from_micros(rng.next() % 2_000));
        let what = rng.next() % 3;
        let mut dead_consumers = 0;
        if what != 1 {
            let p = (rng.next() % 2) as usize;
            producers[p].take().unwrap().kill();
            *killed.get_mut("producer").unwrap() += 1;
            if acked[p].load() < T_PER {
                *killed.get_mut("producer mid-stream").unwrap() += 1;
            }
        }
        if what != 0 {
            let c = (rng.next() % 2) as usize;
            consumers[c].take().unwrap().kill();
            dead_consumers += 1;
            *killed.get_mut("consumer").unwrap() += 1;
        }
        for p in producers.into_iter().flatten() {
            p.join();
        }
        // Producers are done or dead: close, and the surviving consumer drains.
        q.close();
        for c in consumers.into_iter().flatten() {
            c.join();
        }
        let rec: Vec<Vec<u8>> = received.iter().map(|r| r.to_vec()).collect();
        let mut missing = 0;
        for (p, acked) in acked.iter().enumerate() {
            let acks = acked.load();
            for seq in p as u64 * T_PER..(p as u64 * T_PER + T_PER) {
                let n = rec[0][seq as usize] as u32 + rec[1][seq as usize] as u32;
                assert!(
                    n <= 1,
                    "trial {trial} (seed {seed}): seq {seq} delivered {n} times"
                );
                if seq - p as u64 * T_PER < acks && n == 0 {
                    missing += 1;
                }
            }
        }
        assert!(
            missing <= dead_consumers,
            "trial {trial} (seed {seed}): {missing} acknowledged messages lost, {dead_consumers} consumers killed"
        );
    }
    eprintln!("crash torture: {trials} trials, killed {killed:?}");
}
