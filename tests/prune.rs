//! Segments that look after themselves: marks of use, `prune`,
//! `Options::replace_stale`, and the stale hint on `AlreadyExists`, with
//! real processes that create, hold and die.
//!
//! Only `a_stale_segment_is_pruned` calls the global `prune()`, which
//! removes every stale segment of this user; the others name theirs.
//!
//! The tests take turns (`serial`): a global `prune()` removes every stale
//! segment of this user, also the ones other tests make on purpose; and a
//! test that spawns a child forks, and for the moment between its fork and
//! its exec the child holds a copy of every descriptor of this process,
//! marks of use included, so another test's "unused" could read "in use".

#![cfg(not(loom))]

mod common;

use std::io::{Seek, SeekFrom, Write};
use std::sync::Mutex;
use std::time::Duration;

use common::{dispatch, spawn, unique_name, watchdog, Cleanup};
use shmkit::{Error, Event, Options, Segment};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn child() {
    dispatch(&[
        ("create_keep_exit", create_keep_exit),
        ("create_keep_hang", create_keep_hang),
        ("open_and_hold", open_and_hold),
        ("create_and_hang_in_init", create_and_hang_in_init),
        ("fork_and_drop", fork_and_drop),
    ]);
}

/// Creates segment `args[0]` of 64 bytes, writes 0xAB to its first byte,
/// keeps it and exits.
fn create_keep_exit(args: &[String]) {
    let seg = Segment::create(&args[0], 64).unwrap();
    // SAFETY: nobody else can know the segment yet.
    unsafe { seg.as_ptr().write(0xAB) };
    seg.keep();
}

/// Creates segment `args[0]`, keeps it, sets the event `args[1]`, and
/// sleeps until killed.
fn create_keep_hang(args: &[String]) {
    let seg = Segment::create(&args[0], 64).unwrap();
    seg.keep();
    Event::open(&args[1]).unwrap().set();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Opens segment `args[0]`, sets the event `args[1]`, and holds the segment
/// until the event `args[2]` is set (30 s at most).
fn open_and_hold(args: &[String]) {
    let seg = Segment::open(&args[0]).unwrap();
    Event::open(&args[1]).unwrap().set();
    let done = Event::open(&args[2]).unwrap();
    let _ = done.wait_timeout(Duration::from_secs(30)).unwrap();
    drop(seg);
}

/// Creates segment `args[0]` whose init never finishes, after setting the
/// event `args[1]`; killed by the parent.
fn create_and_hang_in_init(args: &[String]) {
    let _ = Segment::create_init(&args[0], 64, &Options::new(), |_| {
        Event::open(&args[1]).unwrap().set();
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
}

/// Writes a creator pid above any pid_max (no such task: dead) into the
/// header of `name`, as if its creator had died.
fn forge_dead_creator(name: &str) {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm/{name}"))
        .unwrap();
    f.seek(SeekFrom::Start(44)).unwrap();
    f.write_all(&0x7fff_fff0u32.to_ne_bytes()).unwrap();
    f.write_all(&1u64.to_ne_bytes()).unwrap();
}

fn exists(name: &str) -> bool {
    std::path::Path::new(&format!("/dev/shm/{name}")).exists()
}

#[test]
fn a_live_opener_keeps_a_dead_creators_segment() {
    let _w = watchdog(Duration::from_secs(120));
    let _s = serial();
    let name = unique_name("liveopener");
    let _c = Cleanup(vec![name.clone()]);
    let created = Event::create_unique().unwrap();
    let held = Event::create_unique().unwrap();
    let done = Event::create_unique().unwrap();

    // A creates and is SIGKILLed; B opens and holds.
    let a = spawn("create_keep_hang", &[&name, created.name()]);
    let a_pid = a.pid();
    assert!(created.wait_timeout(Duration::from_secs(30)).unwrap());
    let b = spawn("open_and_hold", &[&name, held.name(), done.name()]);
    assert!(held.wait_timeout(Duration::from_secs(30)).unwrap());
    a.kill();
    let info = shmkit::inspect(&name).unwrap();
    assert_eq!(info.creator_pid, a_pid);
    assert!(!info.creator_alive);
    assert_eq!(info.in_use, Some(true), "B holds it");
    assert!(!info.is_stale());

    // Nothing removes it while B holds it.
    assert_eq!(shmkit::prune_name(&name, true).unwrap(), None);
    assert_eq!(shmkit::prune_name(&name, false).unwrap(), None);
    assert!(!shmkit::prune_dry_run()
        .unwrap()
        .iter()
        .any(|s| s.name == name));
    let replace = Options::new().replace_stale(true);
    match Segment::create_with(&name, 64, &replace) {
        Err(Error::AlreadyExists {
            dead_creator: None, ..
        }) => {}
        other => panic!("replaced a used segment: {other:?}"),
    }
    assert!(exists(&name));
    assert!(shmkit::list().unwrap().iter().any(|s| s.name == name));

    // B lets go: now it is stale, and the error says what to do.
    done.set();
    b.join();
    let info = shmkit::inspect(&name).unwrap();
    assert_eq!(info.in_use, Some(false));
    assert!(info.is_stale());
    let err = Segment::create(&name, 64).unwrap_err();
    match &err {
        Error::AlreadyExists {
            dead_creator: Some(pid),
            ..
        } => assert_eq!(*pid, a_pid),
        other => panic!("{other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("shmkit::prune") && msg.contains("Options::replace_stale"),
        "{msg}"
    );
    let seg = Segment::create_with(&name, 128, &replace).unwrap();
    assert_eq!(seg.len(), 128);
    assert_eq!(seg.creator_pid(), std::process::id());
}

#[test]
fn a_stale_segment_is_pruned() {
    let _w = watchdog(Duration::from_secs(120));
    let _s = serial();
    let name = unique_name("stale");
    let _c = Cleanup(vec![name.clone()]);
    let child = spawn("create_keep_exit", &[&name]);
    let child_pid = child.pid();
    child.join();
    let info = shmkit::inspect(&name).unwrap();
    assert!(info.is_stale(), "{info:?}");

    let would = shmkit::prune_dry_run().unwrap();
    let found = would.iter().find(|s| s.name == name).expect("listed");
    assert_eq!(found.creator_pid, child_pid);
    assert_eq!(found.kind, "Segment");
    assert_eq!(found.in_use, Some(false));
    assert!(exists(&name), "a dry run removes nothing");

    let removed = shmkit::prune().unwrap();
    let r = removed.iter().find(|s| s.name == name).expect("removed");
    assert_eq!(r.creator_pid, child_pid);
    assert!(!exists(&name));
    assert!(matches!(Segment::open(&name), Err(Error::NotFound { .. })));
}

#[test]
fn prune_name_removes_only_that_stale_name() {
    let _w = watchdog(Duration::from_secs(120));
    let _s = serial();
    let (a, b) = (unique_name("one-a"), unique_name("one-b"));
    let _c = Cleanup(vec![a.clone(), b.clone()]);
    spawn("create_keep_exit", &[&a]).join();
    spawn("create_keep_exit", &[&b]).join();
    assert_eq!(shmkit::prune_name(&a, true).unwrap().unwrap().name, a);
    assert!(exists(&a));
    assert_eq!(shmkit::prune_name(&a, false).unwrap().unwrap().name, a);
    assert!(!exists(&a));
    assert!(exists(&b));
    assert_eq!(shmkit::prune_name(&a, false).unwrap(), None, "gone already");
    assert!(shmkit::prune_name(&b, false).unwrap().is_some());
}

#[test]
fn a_creator_that_died_in_init_leaves_a_prunable_segment() {
    let _w = watchdog(Duration::from_secs(120));
    let _s = serial();
    let name = unique_name("deadinit");
    let _c = Cleanup(vec![name.clone()]);
    let ready = Event::create_unique().unwrap();
    let child = spawn("create_and_hang_in_init", &[&name, ready.name()]);
    assert!(ready.wait_timeout(Duration::from_secs(30)).unwrap());
    // Its creator lives: not stale, though unfinished.
    assert_eq!(shmkit::prune_name(&name, false).unwrap(), None);
    child.kill();
    assert!(matches!(
        Segment::open(&name),
        Err(Error::CreatorDied { .. })
    ));
    let r = shmkit::prune_name(&name, false).unwrap().expect("pruned");
    assert_eq!(r.kind, "uninitialised");
    assert!(!exists(&name));
}

#[test]
fn replace_stale_never_replaces_a_live_creators_segment() {
    let _s = serial();
    let _w = watchdog(Duration::from_secs(60));
    let name = unique_name("livecreator");
    let _c = Cleanup(vec![name.clone()]);
    let replace = Options::new().replace_stale(true);
    let seg = Segment::create(&name, 64).unwrap();
    match Segment::create_with(&name, 64, &replace) {
        Err(
            e @ Error::AlreadyExists {
                dead_creator: None, ..
            },
        ) => assert!(!e.to_string().contains("prune"), "{e}"),
        other => panic!("{other:?}"),
    }
    // No handle left, but the creator (this process) lives: still not stale.
    seg.keep();
    drop(seg);
    assert_eq!(shmkit::inspect(&name).unwrap().in_use, Some(false));
    assert!(matches!(
        Segment::create_with(&name, 64, &replace),
        Err(Error::AlreadyExists {
            dead_creator: None,
            ..
        })
    ));
    assert_eq!(shmkit::prune_name(&name, false).unwrap(), None);
    assert!(exists(&name));
}

#[test]
fn in_use_follows_handles_and_inspect_leaves_no_mark() {
    let _s = serial();
    let _w = watchdog(Duration::from_secs(60));
    let name = unique_name("inuse");
    let _c = Cleanup(vec![name.clone()]);
    let seg = Segment::create(&name, 64).unwrap();
    seg.keep();
    assert_eq!(shmkit::inspect(&name).unwrap().in_use, Some(true));
    let other = Segment::open(&name).unwrap();
    drop(seg);
    assert_eq!(
        shmkit::inspect(&name).unwrap().in_use,
        Some(true),
        "`other` holds it"
    );
    drop(other);
    let info = shmkit::inspect(&name).unwrap();
    assert_eq!(info.in_use, Some(false));
    assert_eq!(info.mode, 0o600);
    // SAFETY: getuid has no preconditions and cannot fail.
    assert_eq!(info.owner_uid, unsafe { libc::getuid() });
    // Typed handles mark too.
    let v = shmkit::Value::<u64>::create_unique(1).unwrap();
    assert_eq!(shmkit::inspect(v.name()).unwrap().in_use, Some(true));
}

#[test]
fn objects_that_are_not_shmkits_are_left_alone() {
    let _s = serial();
    let name = unique_name("foreign");
    let _c = Cleanup(vec![name.clone()]);
    std::fs::write(format!("/dev/shm/{name}"), vec![0u8; 4096]).unwrap();
    assert_eq!(shmkit::prune_name(&name, false).unwrap(), None);
    assert!(!shmkit::prune_dry_run()
        .unwrap()
        .iter()
        .any(|s| s.name == name));
    assert!(exists(&name));
}

/// An opener racing a pruner either gets the segment, which then is still
/// under its name and is the object it maps, or `NotFound`: never a handle
/// on a removed segment. Each round forges a dead creator into a fresh
/// segment, so it is stale until the opener marks it.
#[test]
fn an_opener_racing_a_pruner_never_holds_a_removed_segment() {
    let _w = watchdog(Duration::from_secs(120));
    let _s = serial();
    let name = unique_name("race");
    let _c = Cleanup(vec![name.clone()]);
    let (mut opened, mut pruned) = (0, 0);
    let start = std::sync::Barrier::new(2);
    for round in 0..400u32 {
        let seg = Segment::create(&name, 64).unwrap();
        seg.keep();
        drop(seg);
        forge_dead_creator(&name);
        let (res, removed) = std::thread::scope(|s| {
            let opener = s.spawn(|| {
                start.wait();
                Segment::open(&name)
            });
            start.wait();
            let removed = if round % 2 == 0 {
                shmkit::prune_name(&name, false).unwrap().is_some()
            } else {
                // A replacer takes the same path.
                match Segment::create_with(&name, 32, &Options::new().replace_stale(true)) {
                    Ok(new) => {
                        new.keep();
                        true
                    }
                    Err(Error::AlreadyExists { .. }) => false,
                    Err(e) => panic!("{e:?}"),
                }
            };
            (opener.join().unwrap(), removed)
        });
        match res {
            Ok(seg) => {
                opened += 1;
                // The name names the object `seg` maps: a write through it
                // is seen through a fresh open.
                let again = Segment::open(&name).expect("the opened segment lost its name");
                // SAFETY: only this thread touches the segment now.
                unsafe { seg.as_ptr().write(round as u8 ^ 0x5A) };
                // SAFETY: as above.
                assert_eq!(unsafe { again.as_ptr().read() }, round as u8 ^ 0x5A);
                if seg.len() == 64 {
                    assert!(!removed, "round {round}: pruned while opened");
                }
            }
            Err(Error::NotFound { .. }) => assert!(removed),
            Err(e) => panic!("round {round}: {e:?}"),
        }
        if removed {
            pruned += 1;
        }
        let _ = shmkit::unlink(&name);
    }
    eprintln!("opened {opened}, removed {pruned} of 400 rounds");
}

#[test]
fn every_handle_costs_one_descriptor() {
    let _s = serial();
    // Counted by what the descriptors name, as other tests open theirs.
    fn fds_on(name: &str) -> usize {
        let target = format!("/dev/shm/{name}");
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|t| t.to_str() == Some(target.as_str()))
            .count()
    }
    let seg = Segment::create_unique(64).unwrap();
    assert_eq!(fds_on(seg.name()), 1);
    let handles: Vec<Segment> = (0..50)
        .map(|_| Segment::open(seg.name()).unwrap())
        .collect();
    assert_eq!(fds_on(seg.name()), 51);
    drop(handles);
    assert_eq!(fds_on(seg.name()), 1);
    let _ = shmkit::inspect(seg.name()).unwrap();
    assert_eq!(fds_on(seg.name()), 1, "inspect keeps nothing open");
}

/// Holds `LOCK_EX` on the object `name` names, as a pruner does while it
/// unlinks, until dropped (which closes the descriptor).
struct Exclusive(#[allow(dead_code)] std::fs::File);

impl Exclusive {
    fn take(name: &str) -> Exclusive {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::open(format!("/dev/shm/{name}")).unwrap();
        // SAFETY: `f` is an open descriptor; flock touches no memory.
        assert_eq!(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) }, 0);
        Exclusive(f)
    }
}

/// Whether thread `tid` of this process sleeps in nanosleep (the backoff
/// of an opener that found the object locked).
fn sleeping(tid: i64) -> bool {
    let dir = format!("/proc/self/task/{tid}");
    let nr = std::fs::read_to_string(format!("{dir}/syscall"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<i64>().ok());
    matches!(nr, Some(n) if n == libc::SYS_clock_nanosleep || n == libc::SYS_nanosleep)
}

/// An opener that got its mark on an object a pruner then unlinked opens
/// the name again: the segment made under it since, or `NotFound`.
#[test]
fn an_opener_that_marks_an_unlinked_segment_opens_the_name_again() {
    let _s = serial();
    let _w = watchdog(Duration::from_secs(60));
    for recreate in [true, false] {
        let name = unique_name("relink");
        let _c = Cleanup(vec![name.clone()]);
        Segment::create(&name, 64).unwrap().keep();
        let ex = Exclusive::take(&name);
        // While the lock is held, an open cannot mark the segment.
        let quick = Options::new().init_timeout(Duration::from_millis(20));
        assert!(matches!(
            Segment::open_with(&name, &quick),
            Err(Error::Timeout { .. })
        ));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            let opener = s.spawn(|| {
                // SAFETY: gettid takes no arguments and cannot fail.
                tx.send(unsafe { libc::syscall(libc::SYS_gettid) }).unwrap();
                Segment::open(&name)
            });
            let tid = rx.recv().unwrap();
            // It opened the object and backs off: it holds the old one.
            assert!(common::wait_for(Duration::from_secs(30), || sleeping(tid)));
            shmkit::unlink(&name).unwrap();
            if recreate {
                Segment::create(&name, 128).unwrap().keep();
            }
            drop(ex);
            match (opener.join().unwrap(), recreate) {
                (Ok(seg), true) => assert_eq!(seg.len(), 128, "the new segment"),
                (Err(Error::NotFound { .. }), false) => {}
                (other, _) => panic!("recreate {recreate}: {other:?}"),
            }
        });
    }
}

/// Creates and keeps segment `args[0]`, forks a child that inherits the
/// handle and pauses, drops its own handle, sets the event `args[1]`;
/// once the event `args[2]` is set, kills and reaps the child and sets the
/// event `args[3]`. In a process of its own, so that the fork copies no
/// other test's descriptors.
fn fork_and_drop(args: &[String]) {
    let seg = Segment::create(&args[0], 64).unwrap();
    seg.keep();
    // SAFETY: the child makes only async-signal-safe calls (prctl, pause)
    // and never returns into Rust code; it dies with this thread.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: as above.
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            loop {
                libc::pause();
            }
        }
    }
    assert!(pid > 0, "fork failed");
    drop(seg);
    Event::open(&args[1]).unwrap().set();
    let go = Event::open(&args[2]).unwrap();
    assert!(go.wait_timeout(Duration::from_secs(30)).unwrap());
    // SAFETY: plain syscalls on a child pid of ours.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
    Event::open(&args[3]).unwrap().set();
}

#[test]
fn a_handle_inherited_across_fork_marks_until_both_copies_are_gone() {
    let _s = serial();
    let _w = watchdog(Duration::from_secs(60));
    let name = unique_name("fork");
    let _c = Cleanup(vec![name.clone()]);
    let (ready, go, done) = (
        Event::create_unique().unwrap(),
        Event::create_unique().unwrap(),
        Event::create_unique().unwrap(),
    );
    let p = spawn(
        "fork_and_drop",
        &[&name, ready.name(), go.name(), done.name()],
    );
    assert!(ready.wait_timeout(Duration::from_secs(30)).unwrap());
    let info = shmkit::inspect(&name).unwrap();
    assert!(info.creator_alive);
    assert_eq!(info.in_use, Some(true), "the forked child's copy");
    go.set();
    assert!(done.wait_timeout(Duration::from_secs(30)).unwrap());
    assert_eq!(shmkit::inspect(&name).unwrap().in_use, Some(false));
    p.join();
}

/// `inspect` probes with a brief `LOCK_EX`; a prune or a `replace_stale`
/// racing with such probes still tells them from real users.
#[test]
fn probes_do_not_make_a_stale_segment_look_used() {
    let _w = watchdog(Duration::from_secs(120));
    let _s = serial();
    for round in 0..50 {
        let name = unique_name("probed");
        let _c = Cleanup(vec![name.clone()]);
        Segment::create(&name, 64).unwrap().keep();
        forge_dead_creator(&name);
        let stop = Mutex::new(false);
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    while !*stop.lock().unwrap() {
                        let _ = shmkit::inspect(&name);
                    }
                });
            }
            let done = if round % 2 == 0 {
                shmkit::prune_name(&name, false).unwrap().is_some()
            } else {
                Segment::create_with(&name, 32, &Options::new().replace_stale(true))
                    .map(|s| s.keep())
                    .is_ok()
            };
            *stop.lock().unwrap() = true;
            assert!(
                done,
                "round {round}: a probe made a stale segment look used"
            );
        });
    }
}

/// An open with a zero `init_timeout` still waits out the brief `LOCK_EX`
/// of a pruner (here dry runs of `prune_name` in a loop, on a segment whose
/// creator is dead) instead of failing. A pruner locks only a segment whose
/// creator is dead and that nobody uses, as here between the opens.
#[test]
fn a_zero_timeout_open_waits_out_pruners() {
    let _w = watchdog(Duration::from_secs(120));
    let _s = serial();
    let name = unique_name("zero");
    let _c = Cleanup(vec![name.clone()]);
    Segment::create(&name, 64).unwrap().keep();
    forge_dead_creator(&name);
    let zero = Options::new().init_timeout(Duration::ZERO);
    let stop = Mutex::new(false);
    let mut locked = 0;
    std::thread::scope(|s| {
        let pruner = s.spawn(|| {
            let mut stale = 0u32;
            while !*stop.lock().unwrap() {
                if shmkit::prune_name(&name, true).unwrap().is_some() {
                    stale += 1;
                }
            }
            stale
        });
        for i in 0..3000 {
            if let Err(e) = Segment::open_with(&name, &zero) {
                *stop.lock().unwrap() = true;
                panic!("open {i}: {e:?}");
            }
        }
        *stop.lock().unwrap() = true;
        locked = pruner.join().unwrap();
    });
    assert!(locked > 0, "the pruner never found the segment stale");
}
