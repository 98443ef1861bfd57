//! Sync-kit torture: real processes SIGKILLed at random moments while they
//! use a `Semaphore`/`BoundedSemaphore`, a `Condition` (over a `Lock`), a
//! `Barrier` or an `RLock`; one test per core. What each trial checks:
//!
//! - **Semaphore**: never more than `N` live holders at once (each holder
//!   marks its pid in a shared word and counts itself in a shared counter
//!   while it holds, and checks the count when it comes in; a counted
//!   holder whose process is gone is discounted, since its permit may be
//!   taken over before it can be uncounted); the value never
//!   passes `N`; once every child is dead or done, `reclaim()` gives every
//!   permit back (`value() == N`, all `N` can be taken), and a bounded one
//!   refuses a release past its bound.
//! - **Condition**: each `notify` releases no more waiters than are live
//!   and waiting, and exactly that many live waiters then report
//!   "notified" (so a dead waiter never swallows a notify: the parent waits
//!   for the count, and a swallowed notify is a hang, reported); a lock
//!   holder killed while holding is reported to exactly one next owner, a
//!   process killed outside any lock call to none; the owner word kept
//!   under the lock never shows two owners, nor a dead one unreported.
//! - **Barrier**: a party killed inside `wait` may break the barrier (then
//!   every survivor gets `BrokenBarrier` at the same trip), one killed
//!   outside `wait` never does; no survivor hangs (when the dead party is
//!   provably not counted, this test takes its place, since waiting for a
//!   party that died outside `wait` is the documented behaviour); after
//!   `reset` it trips again with fresh parties.
//! - **RLock**: a holder killed at nesting level 1–3 is reported to
//!   exactly one next owner (none if it held nothing), the owner word never
//!   shows two owners, and the lock works again (level 1, free after one
//!   release, not reported twice).
//!
//! `SHMKIT_TORTURE_TRIALS` (small by default), `SHMKIT_TORTURE_SEED`,
//! `SHMKIT_TORTURE_TRIAL`: as in tests/torture_queue.rs. Bookkeeping lives
//! in [`Words`] (atomics that survive their writer's death).

#![cfg(not(loom))]

mod common;

use std::fmt::Debug;
use std::time::{Duration, Instant};

use common::{
    count_from_env, dispatch, seed_from_env, spawn, unique_name, wait_for, watchdog, Cleanup, Proc,
    Rng, Words,
};
use shmkit::{Barrier, BoundedSemaphore, Condition, Error, Lock, RLock, Semaphore, SemaphoreGuard};

#[test]
fn child() {
    dispatch(&[
        ("sem_worker", sem_worker),
        ("cond_waiter", cond_waiter),
        ("barrier_party", barrier_party),
        ("rlock_worker", rlock_worker),
    ]);
}

/// How long any one step may take before the trial fails as hung
/// (generous, so that a loaded machine does not fail it).
const HANG: Duration = Duration::from_secs(20);

/// Trials of each test unless `SHMKIT_TORTURE_TRIALS` says otherwise.
const CI_TRIALS: u64 = 100;

fn us(n: u64) -> Duration {
    Duration::from_micros(n)
}

fn me() -> u64 {
    u64::from(std::process::id())
}

/// Whether process `pid` still runs (a zombie, or no such process, is
/// dead).
fn alive(pid: u64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rfind(')')
            .and_then(|i| s[i + 1..].trim_start().chars().next())
            .is_some_and(|c| c != 'Z' && c != 'X'),
        Err(_) => false,
    }
}

/// Every thread of `pid` asleep (as in tests/barrier.rs): a party that
/// marked itself inside `wait` and sleeps is past its arrival.
fn all_asleep(pid: u32) -> bool {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    let s: Vec<char> = dir
        .filter_map(|e| {
            let stat = std::fs::read_to_string(e.ok()?.path().join("stat")).ok()?;
            stat[stat.rfind(')')? + 1..].trim_start().chars().next()
        })
        .collect();
    !s.is_empty() && s.iter().all(|&c| c == 'S')
}

/// A little work between two steps of a child: nothing, a few yields, or a
/// short sleep, so that kills land in every phase.
fn dawdle(rng: &mut Rng) {
    match rng.below(4) {
        0 => {}
        1 | 2 => {
            for _ in 0..rng.below(20) {
                std::thread::yield_now();
            }
        }
        _ => std::thread::sleep(us(rng.below(100))),
    }
}

/// Runs `trials` trials of `trial`, prints the totals, fails on the first
/// three failures.
fn run<S: Default + Debug>(
    test: &str,
    mut trial: impl FnMut(u64, u64, &mut S) -> Result<(), String>,
) {
    let _w = watchdog(Duration::from_secs(3_600 * 4));
    let trials = count_from_env("SHMKIT_TORTURE_TRIALS", CI_TRIALS);
    let seed = seed_from_env("SHMKIT_TORTURE_SEED", test);
    let only = std::env::var("SHMKIT_TORTURE_TRIAL")
        .ok()
        .map(|s| s.parse::<u64>().unwrap());
    let t0 = Instant::now();
    let mut st = S::default();
    let mut passed = 0u64;
    let mut failures = Vec::new();
    for t in 0..trials {
        if only.is_some_and(|o| o != t) {
            continue;
        }
        match trial(seed, t, &mut st) {
            Ok(()) => passed += 1,
            Err(e) => {
                let line = format!(
                    "{test}: FAILED trial {t} (SHMKIT_TORTURE_SEED={seed} SHMKIT_TORTURE_TRIAL={t}): {e}"
                );
                eprintln!("{line}");
                failures.push(line);
                if failures.len() >= 3 {
                    break;
                }
            }
        }
    }
    eprintln!(
        "{test} summary: seed {seed}, {passed} trials passed, {} failed, {:.1} s; {st:?}",
        failures.len(),
        t0.elapsed().as_secs_f64()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---- Semaphore ----------------------------------------------------------

/// Words of the semaphore trial: overlaps seen, the most live holders seen
/// (when more than `N`), permits that came back through a guard
/// (`recovered`), holders now (dead ones included); then per child
/// `j` at `SEM_CHILD + 4 j`: its mark (pid while holding), phase, rounds
/// done, started.
const S_OVERLAP: usize = 0;
const S_MOST: usize = 1;
const S_RECOVERED: usize = 2;
const S_COUNT: usize = 3;
const SEM_CHILD: usize = 4;
const fn s_mark(j: usize) -> usize {
    SEM_CHILD + 4 * j
}
const fn s_phase(j: usize) -> usize {
    SEM_CHILD + 4 * j + 1
}
const fn s_rounds(j: usize) -> usize {
    SEM_CHILD + 4 * j + 2
}
const fn s_started(j: usize) -> usize {
    SEM_CHILD + 4 * j + 3
}

/// Phases a child is in (its phase word; the parent reads it to classify
/// where a kill landed).
const P_IDLE: u64 = 0;
const P_ACQ: u64 = 1;
const P_HOLD: u64 = 2;
const P_REL: u64 = 3;
const P_WAIT: u64 = 4;

/// A plain or a bounded semaphore, for code written once.
enum Sem {
    Plain(Semaphore),
    Bounded(BoundedSemaphore),
}

impl Sem {
    fn create(name: &str, n: u32, bounded: bool) -> shmkit::Result<Sem> {
        Ok(if bounded {
            Sem::Bounded(BoundedSemaphore::create(name, n)?)
        } else {
            Sem::Plain(Semaphore::create(name, n)?)
        })
    }

    fn open(name: &str, bounded: bool) -> shmkit::Result<Sem> {
        Ok(if bounded {
            Sem::Bounded(BoundedSemaphore::open(name)?)
        } else {
            Sem::Plain(Semaphore::open(name)?)
        })
    }

    fn acquire(&self) -> shmkit::Result<SemaphoreGuard<'_>> {
        match self {
            Sem::Plain(s) => s.acquire(),
            Sem::Bounded(s) => s.acquire(),
        }
    }

    fn acquire_timeout(&self, t: Duration) -> shmkit::Result<SemaphoreGuard<'_>> {
        match self {
            Sem::Plain(s) => s.acquire_timeout(t),
            Sem::Bounded(s) => s.acquire_timeout(t),
        }
    }

    fn try_acquire(&self) -> shmkit::Result<Option<SemaphoreGuard<'_>>> {
        match self {
            Sem::Plain(s) => s.try_acquire(),
            Sem::Bounded(s) => s.try_acquire(),
        }
    }

    fn release(&self, n: u32) -> shmkit::Result<()> {
        match self {
            Sem::Plain(s) => s.release(n),
            Sem::Bounded(s) => s.release(n),
        }
    }

    fn reclaim(&self) -> u32 {
        match self {
            Sem::Plain(s) => s.reclaim(),
            Sem::Bounded(s) => s.reclaim(),
        }
    }

    fn value(&self) -> u32 {
        match self {
            Sem::Plain(s) => s.value(),
            Sem::Bounded(s) => s.value(),
        }
    }

    fn protected_holders(&self) -> u32 {
        match self {
            Sem::Plain(s) => s.protected_holders(),
            Sem::Bounded(s) => s.protected_holders(),
        }
    }
}

/// Takes a permit in a random form (blocking, timed in a loop, polling).
fn take<'a>(s: &'a Sem, rng: &mut Rng) -> shmkit::Result<SemaphoreGuard<'a>> {
    match rng.below(3) {
        0 => s.acquire(),
        1 => loop {
            match s.acquire_timeout(us(1 + rng.below(3_000))) {
                Err(Error::Timeout { .. }) => {}
                r => break r,
            }
        },
        _ => loop {
            if let Some(g) = s.try_acquire()? {
                break Ok(g);
            }
            std::thread::sleep(us(20 + rng.below(200)));
        },
    }
}

/// args: semaphore, words, index, bounded ("1"), rounds ("-": until
/// killed), children, permits, seed. Each round takes a guarded permit,
/// marks and counts itself, checks that at most `permits` live processes
/// are counted, holds it a little, uncounts and unmarks itself and gives
/// it back.
fn sem_worker(args: &[String]) {
    let w = Words::open(&args[1]);
    let j: usize = args[2].parse().unwrap();
    let s = Sem::open(&args[0], args[3] == "1").unwrap();
    let rounds: u64 = args[4].parse().unwrap_or(u64::MAX);
    let kids: usize = args[5].parse().unwrap();
    let n: u64 = args[6].parse().unwrap();
    let mut rng = Rng::new(args[7].parse().unwrap(), 100 + j as u64);
    w.set(s_started(j), 1);
    for _ in 0..rounds {
        w.set(s_phase(j), P_ACQ);
        let g = take(&s, &mut rng).unwrap();
        if g.recovered() {
            w.add(S_RECOVERED, 1);
        }
        w.set(s_mark(j), me());
        w.set(s_phase(j), P_HOLD);
        // The holders counted atomically (a scan of the marks would not be
        // a snapshot: it could count one holder, then the next one its
        // permit went to). A dead holder's count stays: discount the
        // marks of dead processes (a mark is set before the count is
        // raised and cleared after it is lowered, so this never discounts
        // a live holder, only perhaps a dead one not counted).
        let now = w.add(S_COUNT, 1) + 1;
        if now > n {
            let dead = (0..kids)
                .filter(|&k| {
                    let p = w.get(s_mark(k));
                    p != 0 && p != me() && !alive(p)
                })
                .count() as u64;
            let live = now.saturating_sub(dead);
            if live > n {
                w.add(S_OVERLAP, 1);
            }
            let mut most = w.get(S_MOST);
            while live > most {
                w.set(S_MOST, live);
                most = w.get(S_MOST);
            }
        }
        dawdle(&mut rng);
        w.set(s_phase(j), P_REL);
        w.add(S_COUNT, u64::MAX); // minus one
        w.set(s_mark(j), 0);
        drop(g);
        w.set(s_phase(j), P_IDLE);
        w.add(s_rounds(j), 1);
        dawdle(&mut rng);
    }
}

#[derive(Default, Debug)]
struct SemStats {
    trials: u64,
    bounded_trials: u64,
    kills: u64,
    kills_holding: u64,
    kills_acquiring: u64,
    kills_elsewhere: u64,
    acquisitions: u64,
    recovered_by_guards: u64,
    reclaimed_at_end: u64,
    over_releases_refused: u64,
}

fn sem_trial(seed: u64, trial: u64, st: &mut SemStats) -> Result<(), String> {
    let mut rng = Rng::new(seed, trial);
    let n = 2 + rng.below(2) as u32;
    let kids = 3 + rng.below(2) as usize;
    let victims = 1 + rng.below(2) as usize;
    let bounded = rng.one_in(2);
    let rounds = 10 + rng.below(40);
    let params = format!(
        "{}Semaphore({n}), {kids} children, {victims} killed, {rounds} rounds",
        if bounded { "Bounded" } else { "" }
    );
    let err = |what: String| format!("{params}: {what}");
    let name = unique_name("tsem");
    let _clean = Cleanup(vec![name.clone()]);
    let s = Sem::create(&name, n, bounded).map_err(|e| err(format!("create: {e}")))?;
    let w = Words::create(SEM_CHILD + 4 * kids);
    // The first `victims` children loop until killed.
    let mut procs: Vec<Proc> = (0..kids)
        .map(|j| {
            let r = if j < victims {
                "-".to_owned()
            } else {
                rounds.to_string()
            };
            let seed = rng.next().to_string();
            let a = [
                name.as_str(),
                w.name(),
                &j.to_string(),
                if bounded { "1" } else { "0" },
                &r,
                &kids.to_string(),
                &n.to_string(),
                &seed,
            ];
            spawn("sem_worker", &a)
        })
        .collect();
    if !wait_for(HANG, || (0..kids).all(|j| w.get(s_started(j)) == 1)) {
        return Err(err("the children never started".into()));
    }
    let over = |v: u32| err(format!("value {v} passed the {n} permits"));
    for j in 0..victims {
        std::thread::sleep(us(rng.below(3_000)));
        let v = s.value();
        if v > n {
            return Err(over(v));
        }
        // The victim is always the first child left in `procs`.
        procs.remove(0).kill();
        // Its last phase word: where the kill landed.
        let phase = w.get(s_phase(j));
        st.kills += 1;
        match phase {
            P_HOLD => st.kills_holding += 1,
            P_ACQ => st.kills_acquiring += 1,
            _ => st.kills_elsewhere += 1,
        }
    }
    // The survivors finish (taking over the victims' permits as needed);
    // the value never passes N meanwhile.
    let mut left: Vec<Option<Proc>> = procs.into_iter().map(Some).collect();
    let t0 = Instant::now();
    while left.iter().any(Option::is_some) {
        let v = s.value();
        if v > n {
            return Err(over(v));
        }
        if t0.elapsed() > HANG {
            return Err(err(format!(
                "hang: survivors still running after {HANG:?}; value {v}, rounds {:?}",
                (0..kids).map(|j| w.get(s_rounds(j))).collect::<Vec<_>>()
            )));
        }
        for p in left.iter_mut() {
            if p.as_mut().is_some_and(|p| p.has_exited()) {
                let code = p.take().unwrap().wait_deadline(HANG)?;
                if code != 0 {
                    return Err(err(format!("a survivor failed with exit code {code}")));
                }
            }
        }
        std::thread::sleep(us(200));
    }
    let overlaps = w.get(S_OVERLAP);
    if overlaps != 0 {
        return Err(err(format!(
            "{overlaps} times more than {n} live holders at once (most {})",
            w.get(S_MOST)
        )));
    }
    let done: u64 = (victims..kids).map(|j| w.get(s_rounds(j))).sum();
    if done != rounds * (kids - victims) as u64 {
        return Err(err(format!(
            "the survivors did {done} rounds of {}",
            rounds * (kids - victims) as u64
        )));
    }
    st.acquisitions += (0..kids).map(|j| w.get(s_rounds(j))).sum::<u64>();
    st.recovered_by_guards += w.get(S_RECOVERED);
    // Every permit comes back.
    let reclaimed = s.reclaim();
    st.reclaimed_at_end += u64::from(reclaimed);
    if s.value() != n {
        return Err(err(format!(
            "after reclaim ({reclaimed} reclaimed) the value is {}, not {n}",
            s.value()
        )));
    }
    if s.protected_holders() != 0 {
        return Err(err(format!(
            "{} protected holders left with nobody alive",
            s.protected_holders()
        )));
    }
    if bounded {
        match s.release(1) {
            Err(Error::TooManyReleases { .. }) => st.over_releases_refused += 1,
            other => return Err(err(format!("a release past the bound: {other:?}"))),
        }
        st.bounded_trials += 1;
    }
    let gs: Vec<_> = (0..n)
        .map_while(|_| s.try_acquire().ok().flatten())
        .collect();
    if gs.len() != n as usize || s.try_acquire().map(|g| g.is_some()).unwrap_or(true) {
        return Err(err(format!("took {} permits of {n} at the end", gs.len())));
    }
    drop(gs);
    if s.value() != n {
        return Err(err(format!("value {} after the last guards", s.value())));
    }
    st.trials += 1;
    Ok(())
}

/// Semaphore(N=2..3) and BoundedSemaphore, 3–4 children looping
/// acquire/hold/drop in every form, one or two SIGKILLed at random times.
#[test]
fn semaphore_sigkill_torture() {
    run("semaphore_sigkill_torture", sem_trial);
}

// ---- Condition ----------------------------------------------------------

/// Words of the condition trial: the generation (bumped under the lock by
/// every notify), the owner of the lock (pid), owner-died reports, owner
/// violations, stop; then per waiter `j` at `C_CHILD + 6 j`: registered (1
/// from just before its wait until it re-took the lock), notified count,
/// timed-out count, phase, started, the form of its current wait.
const C_GEN: usize = 0;
const C_OWNER: usize = 1;
const C_TOLD: usize = 2;
const C_VIOL: usize = 3;
const C_STOP: usize = 4;
const C_VIOL_PREV: usize = 5;
const C_CHILD: usize = 8;
const fn c_flag(j: usize) -> usize {
    C_CHILD + 6 * j
}
const fn c_woken(j: usize) -> usize {
    C_CHILD + 6 * j + 1
}
const fn c_timed(j: usize) -> usize {
    C_CHILD + 6 * j + 2
}
const fn c_phase(j: usize) -> usize {
    C_CHILD + 6 * j + 3
}
const fn c_started(j: usize) -> usize {
    C_CHILD + 6 * j + 4
}
const fn c_form(j: usize) -> usize {
    C_CHILD + 6 * j + 5
}

/// Wait forms: untimed ones end only by a notify.
const F_WAIT: u64 = 1;
const F_WAIT_FOR: u64 = 2;
const F_TIMED: u64 = 3;

/// After taking the condition's lock (or re-taking it in a wait): checks
/// the owner word and records a takeover report. The previous owner word
/// is 0 unless the previous owner died holding (then it must be reported).
fn took_lock(w: &Words, told: bool) {
    let prev = w.get(C_OWNER);
    if told {
        w.add(C_TOLD, 1);
    } else if prev != 0 {
        w.add(C_VIOL, 1);
        w.set(C_VIOL_PREV, prev);
    }
    w.set(C_OWNER, me());
}

/// args: condition, words, index, seed. Until told to stop: takes the
/// lock, waits once in a random form, counts how the wait ended, holds a
/// little, lets go.
fn cond_waiter(args: &[String]) {
    let c = Condition::open(&args[0]).unwrap();
    let w = Words::open(&args[1]);
    let j: usize = args[2].parse().unwrap();
    let mut rng = Rng::new(args[3].parse().unwrap(), 200 + j as u64);
    w.set(c_started(j), 1);
    while w.get(C_STOP) == 0 {
        w.set(c_phase(j), P_ACQ);
        let mut g = c.lock().unwrap();
        took_lock(&w, g.owner_died());
        w.set(c_phase(j), P_HOLD);
        dawdle(&mut rng);
        if rng.one_in(4) {
            // A round that only holds the lock, a little longer, so that
            // kills land while holding too.
            std::thread::sleep(us(rng.below(1_000)));
            w.set(c_phase(j), P_REL);
            w.set(C_OWNER, 0);
            drop(g);
            w.set(c_phase(j), P_IDLE);
            dawdle(&mut rng);
            continue;
        }
        let seen = w.get(C_GEN);
        let form = match rng.below(4) {
            0 => F_WAIT,
            1 => F_WAIT_FOR,
            _ => F_TIMED,
        };
        w.set(c_form(j), form);
        w.set(c_flag(j), 1);
        w.set(c_phase(j), P_WAIT);
        w.set(C_OWNER, 0);
        let r = match form {
            F_WAIT => g.wait(),
            F_WAIT_FOR => g.wait_for(|| w.get(C_GEN) != seen),
            _ => g.wait_timeout(us(100 + rng.below(3_000))),
        }
        .unwrap();
        took_lock(&w, r.owner_died);
        w.set(c_phase(j), P_HOLD);
        w.set(c_flag(j), 0);
        if r.timed_out {
            w.add(c_timed(j), 1);
        } else {
            w.add(c_woken(j), 1);
        }
        dawdle(&mut rng);
        w.set(c_phase(j), P_REL);
        w.set(C_OWNER, 0);
        drop(g);
        w.set(c_phase(j), P_IDLE);
        dawdle(&mut rng);
    }
}

#[derive(Default, Debug)]
struct CondStats {
    trials: u64,
    kills: u64,
    kills_waiting: u64,
    kills_holding: u64,
    kills_acquiring_or_releasing: u64,
    kills_idle: u64,
    notifies: u64,
    released: u64,
    owner_died_reports: u64,
}

fn cond_trial(seed: u64, trial: u64, st: &mut CondStats) -> Result<(), String> {
    let mut rng = Rng::new(seed, trial);
    let kids = 2 + rng.below(2) as usize;
    let victim = rng.below(kids as u64) as usize;
    let rounds = 8 + rng.below(12);
    let kill_at = 1 + rng.below(rounds - 4);
    let params =
        format!("{kids} waiters, waiter {victim} killed before round {kill_at} of {rounds}");
    let err = |what: String| format!("{params}: {what}");
    let cname = unique_name("tcond");
    let lname = unique_name("tclock");
    let _clean = Cleanup(vec![cname.clone(), lname.clone()]);
    let lock = Lock::create(&lname).map_err(|e| err(format!("lock: {e}")))?;
    let c = Condition::create_over(Some(&cname), lock).map_err(|e| err(format!("cond: {e}")))?;
    let w = Words::create(C_CHILD + 6 * kids);
    let mut procs: Vec<Option<Proc>> = (0..kids)
        .map(|j| {
            let seed = rng.next().to_string();
            Some(spawn(
                "cond_waiter",
                &[c.name(), w.name(), &j.to_string(), &seed],
            ))
        })
        .collect();
    if !wait_for(HANG, || (0..kids).all(|j| w.get(c_started(j)) == 1)) {
        return Err(err("the waiters never started".into()));
    }
    let woken = |w: &Words| (0..kids).map(|j| w.get(c_woken(j))).sum::<u64>();
    let mut expected = 0u64;
    let mut killed = false;
    let mut phase_at_death = P_IDLE;
    let mut told_here = 0u64;
    for round in 0..rounds {
        if round == kill_at {
            std::thread::sleep(us(rng.below(3_000)));
            let p = procs[victim].take().unwrap();
            p.kill();
            killed = true;
            phase_at_death = w.get(c_phase(victim));
            st.kills += 1;
            match phase_at_death {
                P_WAIT => st.kills_waiting += 1,
                P_HOLD => st.kills_holding += 1,
                P_IDLE => st.kills_idle += 1,
                _ => st.kills_acquiring_or_releasing += 1,
            }
        }
        let live = |j: usize| !(killed && j == victim);
        // Let some live waiter get into a wait (best effort: timed waiters
        // come and go).
        wait_for(HANG, || (0..kids).any(|j| live(j) && w.get(c_flag(j)) == 1));
        let g = c.lock().map_err(|e| err(format!("lock: {e}")))?;
        let told = g.owner_died();
        told_here += u64::from(told);
        took_lock(&w, told);
        let flagged: Vec<usize> = (0..kids)
            .filter(|&j| live(j) && w.get(c_flag(j)) == 1)
            .collect();
        let untimed = flagged
            .iter()
            .filter(|&&j| w.get(c_form(j)) != F_TIMED)
            .count();
        w.add(C_GEN, 1);
        let (k, r) = match rng.below(4) {
            0 => (usize::MAX, g.notify_all()),
            1 => (2, g.notify(2)),
            _ => (1, g.notify(1)),
        };
        let r = r.map_err(|e| err(format!("notify: {e}")))?;
        st.notifies += 1;
        st.released += r as u64;
        if r > k.min(flagged.len()) {
            return Err(err(format!(
                "round {round}: notify({k}) released {r}, only {} live waiters were waiting",
                flagged.len()
            )));
        }
        if r < k.min(untimed) {
            return Err(err(format!(
                "round {round}: notify({k}) released {r}, {untimed} live untimed waiters were waiting"
            )));
        }
        expected += r as u64;
        w.set(C_OWNER, 0);
        drop(g);
        if !wait_for(HANG, || woken(&w) >= expected) {
            return Err(err(format!(
                "round {round}: notify({k}) released {r} but only {} of {expected} \
                 notifications arrived at live waiters (swallowed by a dead one?)",
                woken(&w)
            )));
        }
        if woken(&w) > expected {
            return Err(err(format!(
                "round {round}: {} waiters report notified, {expected} were released",
                woken(&w)
            )));
        }
    }
    // Stop the survivors: wake whoever waits until they have all left.
    w.set(C_STOP, 1);
    let t0 = Instant::now();
    loop {
        for p in procs.iter_mut() {
            if p.as_mut().is_some_and(|p| p.has_exited()) {
                let code = p.take().unwrap().wait_deadline(HANG)?;
                if code != 0 {
                    return Err(err(format!("a waiter failed with exit code {code}")));
                }
            }
        }
        if procs.iter().all(Option::is_none) {
            break;
        }
        if t0.elapsed() > HANG {
            return Err(err("hang: the waiters did not stop".into()));
        }
        let g = c.lock().map_err(|e| err(format!("lock: {e}")))?;
        let told = g.owner_died();
        told_here += u64::from(told);
        took_lock(&w, told);
        w.add(C_GEN, 1);
        g.notify_all()
            .map_err(|e| err(format!("notify_all: {e}")))?;
        w.set(C_OWNER, 0);
        drop(g);
        std::thread::sleep(us(200));
    }
    // The dead waiter's slot is freed by a notify that looks at it.
    {
        let g = c.lock().map_err(|e| err(format!("lock: {e}")))?;
        let told = g.owner_died();
        told_here += u64::from(told);
        took_lock(&w, told);
        let r = g
            .notify_all()
            .map_err(|e| err(format!("notify_all: {e}")))?;
        w.set(C_OWNER, 0);
        if r != 0 {
            return Err(err(format!("notify_all released {r} with nobody alive")));
        }
    }
    if c.waiting() != 0 {
        return Err(err(format!(
            "{} waiters left with nobody alive",
            c.waiting()
        )));
    }
    let viol = w.get(C_VIOL);
    if viol != 0 {
        return Err(err(format!(
            "{viol} times the lock was taken while the owner word named {} \
             (two owners, or a dead holder's lock taken over unreported); killed in phase {phase_at_death}",
            w.get(C_VIOL_PREV)
        )));
    }
    let told = w.get(C_TOLD);
    st.owner_died_reports += told;
    let ok = match phase_at_death {
        P_HOLD => told == 1,
        P_IDLE => told == 0,
        _ => told <= 1,
    };
    if !ok {
        return Err(err(format!(
            "killed in phase {phase_at_death} (2 holding, 0 idle): {told} owner-died reports \
             ({told_here} to the notifier)"
        )));
    }
    st.trials += 1;
    Ok(())
}

/// Condition over a Lock: 2–3 waiting processes in wait / wait_for /
/// wait_timeout, one SIGKILLed at a random moment; this test notifies
/// (notify(1), notify(2), notify_all) and counts every release.
#[test]
fn condition_sigkill_torture() {
    run("condition_sigkill_torture", cond_trial);
}

// ---- Barrier ------------------------------------------------------------

/// Words of the barrier trial, per party `j` at `4 j`: the trip it is at
/// (set before each wait), inside `wait` (1), its outcome, the trip at
/// which it got `BrokenBarrier`; then lockstep violations.
const fn b_round(j: usize) -> usize {
    4 * j
}
const fn b_in(j: usize) -> usize {
    4 * j + 1
}
const fn b_out(j: usize) -> usize {
    4 * j + 2
}
const fn b_broke_at(j: usize) -> usize {
    4 * j + 3
}
const B_PARTIES: usize = 3;
const B_VIOL: usize = 4 * B_PARTIES;
const B_STARTED: usize = 4 * B_PARTIES + 1;

const O_RUNNING: u64 = 0;
const O_DONE: u64 = 1;
const O_BROKEN: u64 = 2;
const O_ERROR: u64 = 3;

/// args: barrier, words, index, trips, victim index, seed. Waits `trips`
/// times, checking lockstep with the live parties after each trip.
fn barrier_party(args: &[String]) {
    let b = Barrier::open(&args[0]).unwrap();
    let w = Words::open(&args[1]);
    let j: usize = args[2].parse().unwrap();
    let trips: u64 = args[3].parse().unwrap();
    let victim: usize = args[4].parse().unwrap();
    let mut rng = Rng::new(args[5].parse().unwrap(), 300 + j as u64);
    w.add(B_STARTED, 1);
    for i in 1..=trips {
        w.set(b_round(j), i);
        w.set(b_in(j), 1);
        let r = b.wait();
        w.set(b_in(j), 0);
        match r {
            Ok(_) => {
                for k in (0..B_PARTIES).filter(|&k| k != victim) {
                    let rk = w.get(b_round(k));
                    if rk != i && rk != i + 1 {
                        w.add(B_VIOL, 1);
                    }
                }
            }
            Err(Error::BrokenBarrier { .. }) => {
                w.set(b_broke_at(j), i);
                w.set(b_out(j), O_BROKEN);
                return;
            }
            Err(_) => {
                w.set(b_out(j), O_ERROR);
                return;
            }
        }
        dawdle(&mut rng);
    }
    w.set(b_out(j), O_DONE);
}

#[derive(Default, Debug)]
struct BarStats {
    trials: u64,
    kills: u64,
    kills_inside_wait: u64,
    kills_outside_wait: u64,
    kills_after_finishing: u64,
    broken_trials: u64,
    broken_party_outcomes: u64,
    stand_in_trips: u64,
    fresh_trips_after_reset: u64,
}

fn barrier_trial(seed: u64, trial: u64, st: &mut BarStats) -> Result<(), String> {
    let mut rng = Rng::new(seed, trial);
    let trips = 4 + rng.below(20);
    let victim = rng.below(B_PARTIES as u64) as usize;
    let delay = us(rng.below(2_000));
    let params = format!("{trips} trips, party {victim} killed after {delay:?}");
    let err = |what: String| format!("{params}: {what}");
    let name = unique_name("tbar");
    let _clean = Cleanup(vec![name.clone()]);
    let b = Barrier::create(&name, B_PARTIES as u32).map_err(|e| err(format!("create: {e}")))?;
    let w = Words::create(4 * B_PARTIES + 2);
    let mut procs: Vec<Option<Proc>> = (0..B_PARTIES)
        .map(|j| {
            let seed = rng.next().to_string();
            Some(spawn(
                "barrier_party",
                &[
                    b.name(),
                    w.name(),
                    &j.to_string(),
                    &trips.to_string(),
                    &victim.to_string(),
                    &seed,
                ],
            ))
        })
        .collect();
    if !wait_for(HANG, || w.get(B_STARTED) == B_PARTIES as u64) {
        return Err(err("the parties never started".into()));
    }
    std::thread::sleep(delay);
    procs[victim].take().unwrap().kill();
    // Its last words: inside `wait` (or about to be, or just out), done.
    let inside = w.get(b_in(victim)) == 1;
    st.kills += 1;
    if w.get(b_out(victim)) != O_RUNNING {
        st.kills_after_finishing += 1;
    } else if inside {
        st.kills_inside_wait += 1;
    } else {
        st.kills_outside_wait += 1;
    }
    let survivors: Vec<usize> = (0..B_PARTIES).filter(|&j| j != victim).collect();
    let t0 = Instant::now();
    loop {
        let running: Vec<usize> = survivors
            .iter()
            .copied()
            .filter(|&j| w.get(b_out(j)) == O_RUNNING)
            .collect();
        if running.is_empty() {
            break;
        }
        if t0.elapsed() > HANG {
            return Err(err(format!(
                "hang: parties {running:?} still running after {HANG:?}: rounds {:?}, inside {:?}, \
                 n_waiting {}, broken {}",
                survivors.iter().map(|&j| w.get(b_round(j))).collect::<Vec<_>>(),
                survivors.iter().map(|&j| w.get(b_in(j))).collect::<Vec<_>>(),
                b.n_waiting(),
                b.broken()
            )));
        }
        // Every running survivor asleep inside `wait`, and the barrier
        // counting exactly them: the dead party is not counted in this
        // generation (had it been, the count would have tripped it), so
        // nothing will ever come for them. Stand in for it.
        let asleep = |j: usize| {
            w.get(b_in(j)) == 1 && procs[j].as_ref().is_some_and(|p| all_asleep(p.pid()))
        };
        let stuck = |b: &Barrier| {
            !b.broken()
                && running.iter().all(|&j| asleep(j))
                && b.n_waiting() == running.len() as u32
        };
        if running.len() < B_PARTIES && stuck(&b) && stuck(&b) {
            match b.wait() {
                Ok(_) => st.stand_in_trips += 1,
                Err(e) => {
                    return Err(err(format!(
                        "the stand-in's wait with {running:?} asleep in it: {e}"
                    )))
                }
            }
            continue;
        }
        std::thread::sleep(us(200));
    }
    for j in survivors.iter().copied() {
        let code = procs[j].take().unwrap().wait_deadline(HANG)?;
        if code != 0 {
            return Err(err(format!("party {j} failed with exit code {code}")));
        }
    }
    let outs: Vec<u64> = survivors.iter().map(|&j| w.get(b_out(j))).collect();
    let rounds: Vec<u64> = survivors.iter().map(|&j| w.get(b_round(j))).collect();
    if outs.contains(&O_ERROR) {
        return Err(err(format!("a survivor's wait failed: outcomes {outs:?}")));
    }
    if w.get(B_VIOL) != 0 {
        return Err(err(format!(
            "{} lockstep violations (a party past another's trip)",
            w.get(B_VIOL)
        )));
    }
    let broke = outs.iter().filter(|&&o| o == O_BROKEN).count();
    if broke != 0 {
        let at: Vec<u64> = survivors.iter().map(|&j| w.get(b_broke_at(j))).collect();
        if broke != survivors.len() || at.iter().any(|&a| a != at[0]) {
            return Err(err(format!(
                "outcomes {outs:?} (1 done, 2 broken), broken at trips {at:?}: \
                 one break must reach every party at the same trip"
            )));
        }
        if !inside {
            return Err(err(format!(
                "broken at trip {} by a party killed outside wait",
                at[0]
            )));
        }
        if !b.broken() {
            return Err(err("survivors got BrokenBarrier, it is not broken".into()));
        }
        st.broken_trials += 1;
        st.broken_party_outcomes += broke as u64;
    } else if rounds.iter().any(|&r| r != trips) {
        return Err(err(format!("survivors done at rounds {rounds:?}")));
    }
    // After a reset it trips again with fresh parties (threads here).
    b.reset();
    if b.broken() || b.n_waiting() != 0 {
        return Err(err(format!(
            "after reset: broken {}, {} waiting",
            b.broken(),
            b.n_waiting()
        )));
    }
    let fresh: Vec<Result<usize, Error>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..B_PARTIES)
            .map(|_| {
                s.spawn(|| {
                    let b = Barrier::open(&name)?;
                    b.wait()?;
                    b.wait()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut idx: Vec<usize> = fresh
        .into_iter()
        .collect::<Result<_, _>>()
        .map_err(|e| err(format!("a fresh party after reset: {e}")))?;
    idx.sort_unstable();
    if idx != (0..B_PARTIES).collect::<Vec<_>>() || b.broken() {
        return Err(err(format!("fresh parties got indices {idx:?}")));
    }
    st.fresh_trips_after_reset += 2;
    st.trials += 1;
    Ok(())
}

/// Barrier(3), three processes doing 4–23 trips, one SIGKILLed at a
/// random moment; then reset and fresh parties.
#[test]
fn barrier_sigkill_torture() {
    run("barrier_sigkill_torture", barrier_trial);
}

// ---- RLock --------------------------------------------------------------

/// Words of the RLock trial: the owner (pid), owner-died reports, owner
/// violations, nested acquisitions wrongly reported; then per worker `j`
/// at `R_CHILD + 4 j`: level held, phase, rounds done, started.
const R_OWNER: usize = 0;
const R_TOLD: usize = 1;
const R_VIOL: usize = 2;
const R_NESTED_TOLD: usize = 3;
const R_VIOL_PREV: usize = 4;
const R_CHILD: usize = 8;
const fn r_level(j: usize) -> usize {
    R_CHILD + 4 * j
}
const fn r_phase(j: usize) -> usize {
    R_CHILD + 4 * j + 1
}
const fn r_rounds(j: usize) -> usize {
    R_CHILD + 4 * j + 2
}
const fn r_started(j: usize) -> usize {
    R_CHILD + 4 * j + 3
}

/// After taking the RLock at level 1: as [`took_lock`], on the RLock's
/// words.
fn took_rlock(w: &Words, told: bool) {
    let prev = w.get(R_OWNER);
    if told {
        w.add(R_TOLD, 1);
    } else if prev != 0 {
        w.add(R_VIOL, 1);
        w.set(R_VIOL_PREV, prev);
    }
    w.set(R_OWNER, me());
}

/// args: rlock, words, index, rounds ("-": until killed), seed. Each
/// round takes the lock (in a random form) to a random level 1–3, holds
/// it a little at each level, and lets go level by level.
fn rlock_worker(args: &[String]) {
    let l = RLock::open(&args[0]).unwrap();
    let w = Words::open(&args[1]);
    let j: usize = args[2].parse().unwrap();
    let rounds: u64 = args[3].parse().unwrap_or(u64::MAX);
    let mut rng = Rng::new(args[4].parse().unwrap(), 400 + j as u64);
    w.set(r_started(j), 1);
    for _ in 0..rounds {
        w.set(r_phase(j), P_ACQ);
        let g = match rng.below(3) {
            0 => l.lock(),
            1 => loop {
                match l.lock_timeout(us(1 + rng.below(3_000))) {
                    Err(Error::Timeout { .. }) => {}
                    r => break r,
                }
            },
            _ => loop {
                if let Some(g) = l.try_lock().unwrap() {
                    break Ok(g);
                }
                std::thread::sleep(us(20 + rng.below(200)));
            },
        }
        .unwrap();
        took_rlock(&w, g.owner_died());
        w.set(r_level(j), 1);
        w.set(r_phase(j), P_HOLD);
        let depth = 1 + rng.below(3);
        let mut nested = Vec::new();
        for d in 2..=depth {
            dawdle(&mut rng);
            let n = l.lock().unwrap();
            if n.owner_died() || l.level() != d as u32 {
                w.add(R_NESTED_TOLD, 1);
            }
            nested.push(n);
            w.set(r_level(j), d);
        }
        dawdle(&mut rng);
        while let Some(n) = nested.pop() {
            drop(n);
            w.set(r_level(j), nested.len() as u64 + 1);
            dawdle(&mut rng);
        }
        w.set(r_phase(j), P_REL);
        w.set(R_OWNER, 0);
        drop(g);
        w.set(r_level(j), 0);
        w.set(r_phase(j), P_IDLE);
        w.add(r_rounds(j), 1);
        dawdle(&mut rng);
    }
}

#[derive(Default, Debug)]
struct RStats {
    trials: u64,
    kills: u64,
    kills_holding_at_level: [u64; 3],
    kills_acquiring_or_releasing: u64,
    kills_idle: u64,
    owner_died_reports: u64,
    reported_to_the_test: u64,
    acquisitions: u64,
}

fn rlock_trial(seed: u64, trial: u64, st: &mut RStats) -> Result<(), String> {
    let mut rng = Rng::new(seed, trial);
    let kids = 2 + rng.below(2) as usize;
    let victim = rng.below(kids as u64) as usize;
    let rounds = 10 + rng.below(30);
    let level = 1 + rng.below(3);
    let delay = us(rng.below(4) * rng.below(100));
    let params = format!(
        "{kids} workers, {rounds} rounds, worker {victim} killed {delay:?} after reaching level {level}"
    );
    let err = |what: String| format!("{params}: {what}");
    let name = unique_name("trlock");
    let _clean = Cleanup(vec![name.clone()]);
    let l = RLock::create(&name).map_err(|e| err(format!("create: {e}")))?;
    let w = Words::create(R_CHILD + 4 * kids);
    let mut procs: Vec<Option<Proc>> = (0..kids)
        .map(|j| {
            let r = if j == victim {
                "-".to_owned()
            } else {
                rounds.to_string()
            };
            let seed = rng.next().to_string();
            Some(spawn(
                "rlock_worker",
                &[l.name(), w.name(), &j.to_string(), &r, &seed],
            ))
        })
        .collect();
    if !wait_for(HANG, || (0..kids).all(|j| w.get(r_started(j)) == 1)) {
        return Err(err("the workers never started".into()));
    }
    if !wait_for(HANG, || w.get(r_level(victim)) == level) {
        return Err(err(format!("the victim never reached level {level}")));
    }
    std::thread::sleep(delay);
    procs[victim].take().unwrap().kill();
    let phase = w.get(r_phase(victim));
    let at = w.get(r_level(victim));
    st.kills += 1;
    match phase {
        P_HOLD => st.kills_holding_at_level[at as usize - 1] += 1,
        P_IDLE => st.kills_idle += 1,
        _ => st.kills_acquiring_or_releasing += 1,
    }
    for j in (0..kids).filter(|&j| j != victim) {
        let code = procs[j].take().unwrap().wait_deadline(HANG)?;
        if code != 0 {
            return Err(err(format!("worker {j} failed with exit code {code}")));
        }
    }
    // The test is the next owner if the survivors were done.
    let g = l
        .lock_timeout(HANG)
        .map_err(|e| err(format!("the last lock: {e}")))?;
    let told_here = g.owner_died();
    took_rlock(&w, told_here);
    st.reported_to_the_test += u64::from(told_here);
    if l.level() != 1 {
        return Err(err(format!("taken over at level {}", l.level())));
    }
    let inner = l.lock().map_err(|e| err(format!("nested: {e}")))?;
    if inner.owner_died() {
        return Err(err("a nested acquisition was told".into()));
    }
    drop(inner);
    w.set(R_OWNER, 0);
    drop(g);
    if l.is_locked() {
        return Err(err("still locked after the last release".into()));
    }
    let again = l.lock().map_err(|e| err(format!("again: {e}")))?;
    if again.owner_died() {
        return Err(err("told twice".into()));
    }
    drop(again);
    if w.get(R_VIOL) != 0 {
        return Err(err(format!(
            "{} times the lock was taken while the owner word named {} \
             (two owners, or a dead holder's lock taken over unreported); killed in phase {phase} at level {at}",
            w.get(R_VIOL),
            w.get(R_VIOL_PREV)
        )));
    }
    if w.get(R_NESTED_TOLD) != 0 {
        return Err(err(format!(
            "{} nested acquisitions told or at the wrong level",
            w.get(R_NESTED_TOLD)
        )));
    }
    let told = w.get(R_TOLD);
    st.owner_died_reports += told;
    let ok = match phase {
        P_HOLD => told == 1,
        P_IDLE => told == 0,
        _ => told <= 1,
    };
    if !ok {
        return Err(err(format!(
            "killed in phase {phase} (2 holding, 0 idle) at level {at}: {told} owner-died reports"
        )));
    }
    let done: u64 = (0..kids)
        .filter(|&j| j != victim)
        .map(|j| w.get(r_rounds(j)))
        .sum();
    if done != rounds * (kids as u64 - 1) {
        return Err(err(format!("the survivors did {done} rounds")));
    }
    st.acquisitions += (0..kids).map(|j| w.get(r_rounds(j))).sum::<u64>();
    st.trials += 1;
    Ok(())
}

/// RLock: 2–3 workers nesting 1–3 levels, one SIGKILLed at a random level
/// and moment; the next owner is told once, and the lock works again.
#[test]
fn rlock_sigkill_torture() {
    run("rlock_sigkill_torture", rlock_trial);
}
