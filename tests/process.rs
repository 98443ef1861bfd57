//! `shmkit::process`: workers started as this test binary again, with a
//! role. A custom harness (`harness = false`): `main` first dispatches the
//! roles, then runs the tests, each under a watchdog.

#[cfg(not(loom))]
mod common;

#[cfg(loom)]
fn main() {}

#[cfg(not(loom))]
fn main() -> std::process::ExitCode {
    real::main()
}

#[cfg(not(loom))]
mod real {

    use std::process::ExitCode;
    use std::time::{Duration, Instant};

    use super::common::watchdog;
    use shmkit::process::{self, Builder, OnDrop, Role};
    use shmkit::{Error, Event, Queue, WaitSet};

    const ROLES: &[(&str, process::RoleFn)] = &[
        ("ok", |_| Ok(())),
        ("fail", |_| {
            Err(Error::InvalidArgument("asked to fail".into()))
        }),
        ("sleep", |_| {
            std::thread::sleep(Duration::from_secs(60));
            Ok(())
        }),
        ("wait_event", wait_event),
        ("spawner", spawner),
        ("echo_args", echo_args),
    ];

    /// Waits (up to 60 s) for the event named by argument 0, then exits.
    fn wait_event(role: &Role) -> shmkit::Result<()> {
        let ev = Event::open(role.arg(0)?)?;
        ev.wait_timeout(Duration::from_secs(60))?;
        Ok(())
    }

    /// Puts its arguments and an environment variable into the queue named by
    /// argument 0.
    fn echo_args(role: &Role) -> shmkit::Result<()> {
        let q = Queue::open(role.arg(0)?)?;
        for a in &role.args()[1..] {
            q.put(a.as_bytes())?;
        }
        q.put(
            std::env::var("SHMKIT_TEST_VAR")
                .unwrap_or_default()
                .as_bytes(),
        )
    }

    /// Starts 3 sleeping workers from a thread that exits at once, puts their
    /// pids into the queue named by argument 0, and sleeps (to be SIGKILLed).
    fn spawner(role: &Role) -> shmkit::Result<()> {
        let q = Queue::open(role.arg(0)?)?;
        let kids = std::thread::spawn(|| {
            (0..3)
                .map(|_| {
                    Builder::new("sleep")
                        .quiet(true)
                        .on_drop(OnDrop::Detach)
                        .spawn()
                })
                .collect::<shmkit::Result<Vec<_>>>()
        })
        .join()
        .expect("spawning thread")?;
        // The thread that asked for them has exited: they must live on.
        std::thread::sleep(Duration::from_millis(50));
        for k in &kids {
            q.put(k.pid().to_string().as_bytes())?;
        }
        std::thread::sleep(Duration::from_secs(60));
        Ok(())
    }

    /// Whether `pid` runs (not gone, not a zombie), from `/proc/<pid>/stat`.
    fn running(pid: u32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(s) => !matches!(
                s.rsplit_once(')')
                    .and_then(|(_, r)| r.trim().chars().next()),
                Some('Z' | 'X') | None
            ),
            Err(_) => false,
        }
    }

    fn spawn_and_join_report_the_exit_status() {
        let mut ok = process::spawn("ok", &[]).unwrap();
        assert_eq!(ok.role(), "ok");
        let s = ok.join().unwrap();
        assert!(s.success(), "{s:?}");
        // Joining again, killing or terminating an exited child: same status,
        // nothing to do, no error.
        assert_eq!(ok.join().unwrap(), s);
        ok.kill().unwrap();
        ok.terminate().unwrap();
        assert_eq!(ok.exit_status(), Some(s));
        assert!(!ok.is_alive().unwrap());

        let mut fail = Builder::new("fail").quiet(true).spawn().unwrap();
        assert_eq!(fail.join().unwrap().code(), Some(1));
        let mut unknown = Builder::new("no-such-role").quiet(true).spawn().unwrap();
        assert_eq!(unknown.join().unwrap().code(), Some(2));
        assert!(matches!(
            process::spawn("", &[]),
            Err(Error::InvalidArgument(_))
        ));
    }

    fn arguments_and_environment_reach_the_worker() {
        let q = Queue::create_unique(8, 64).unwrap();
        let mut c = Builder::new("echo_args")
            .arg(q.name())
            .args(["a b", "c"])
            .env("SHMKIT_TEST_VAR", "v")
            .spawn()
            .unwrap();
        assert!(c.join().unwrap().success());
        assert_eq!(q.get().unwrap(), b"a b");
        assert_eq!(q.get().unwrap(), b"c");
        assert_eq!(q.get().unwrap(), b"v");
    }

    fn join_timeout_waits_its_time_then_sees_the_kill() {
        let mut c = process::spawn("sleep", &[]).unwrap();
        assert!(c.is_alive().unwrap());
        assert!(c.try_join().unwrap().is_none());
        let t0 = Instant::now();
        assert!(c.join_timeout(Duration::from_millis(50)).unwrap().is_none());
        assert!(t0.elapsed() >= Duration::from_millis(50), "returned early");
        c.kill().unwrap();
        let s = c
            .join_timeout(Duration::from_secs(30))
            .unwrap()
            .expect("killed");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(s.signal(), Some(libc::SIGKILL));

        let mut t = process::spawn("sleep", &[]).unwrap();
        t.terminate().unwrap();
        assert_eq!(t.join().unwrap().signal(), Some(libc::SIGTERM));
    }

    fn a_dropped_child_is_killed_and_reaped_unless_detached() {
        let c = process::spawn("sleep", &[]).unwrap();
        let pid = c.pid();
        assert!(running(pid));
        drop(c);
        assert!(!running(pid), "a dropped child still runs");
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "a dropped child was left a zombie"
        );

        let mut d = process::spawn("sleep", &[]).unwrap();
        d.set_on_drop(OnDrop::Detach);
        let pid = d.pid();
        drop(d);
        assert!(running(pid), "a detached child was killed");
        // Clean up: nobody holds its handle any more.
        // SAFETY: kill(2) with a pid we started and a signal number.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        let mut status = 0;
        // SAFETY: waitpid on our own child, with a valid out-pointer.
        unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) };
    }

    fn workers_die_with_their_parent_process_not_its_thread() {
        let q = Queue::create_unique(8, 16).unwrap();
        let mut parent = process::spawn("spawner", &[q.name()]).unwrap();
        let pids: Vec<u32> = (0..3)
            .map(|_| {
                let m = q.get_timeout(Duration::from_secs(30)).unwrap();
                String::from_utf8(m).unwrap().parse().unwrap()
            })
            .collect();
        // Their spawning thread has exited in the parent: they run on.
        for &p in &pids {
            assert!(
                running(p),
                "worker {p} died with the thread that spawned it"
            );
        }
        let t0 = Instant::now();
        parent.kill().unwrap();
        parent.join().unwrap();
        while pids.iter().any(|&p| running(p)) {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "workers outlived their SIGKILLed parent"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        println!(
            "    (3 workers gone {:?} after their parent's SIGKILL)",
            t0.elapsed()
        );
    }

    fn a_child_exit_is_ready_in_a_wait_set() {
        let ev = Event::create_unique().unwrap();
        let q = Queue::create_unique(1, 8).unwrap();
        let mut c = process::spawn("wait_event", &[ev.name()]).unwrap();
        let mut ws = WaitSet::new();
        let kq = ws.add(&q).unwrap();
        let kc = ws.add(&c).unwrap();
        let t0 = Instant::now();
        assert!(
            ws.wait_timeout(Duration::from_millis(30)).is_err(),
            "ready early"
        );
        assert!(t0.elapsed() >= Duration::from_millis(30));
        ev.set();
        let r = ws.wait_timeout(Duration::from_secs(30)).unwrap();
        assert!(r.contains(kc) && !r.contains(kq), "{r:?}");
        // Level-triggered: still ready until (and after) it is joined.
        assert!(ws.poll().unwrap().contains(kc));
        drop(ws);
        assert!(c.join().unwrap().success());
        assert_eq!(shmkit::wait(&[&c], Some(Duration::ZERO)).unwrap(), [0]);
    }

    pub(super) fn main() -> ExitCode {
        if let Some(code) = process::dispatch(ROLES) {
            return code;
        }
        let tests: &[(&str, fn())] = &[
            (
                "spawn_and_join_report_the_exit_status",
                spawn_and_join_report_the_exit_status,
            ),
            (
                "arguments_and_environment_reach_the_worker",
                arguments_and_environment_reach_the_worker,
            ),
            (
                "join_timeout_waits_its_time_then_sees_the_kill",
                join_timeout_waits_its_time_then_sees_the_kill,
            ),
            (
                "a_dropped_child_is_killed_and_reaped_unless_detached",
                a_dropped_child_is_killed_and_reaped_unless_detached,
            ),
            (
                "workers_die_with_their_parent_process_not_its_thread",
                workers_die_with_their_parent_process_not_its_thread,
            ),
            (
                "a_child_exit_is_ready_in_a_wait_set",
                a_child_exit_is_ready_in_a_wait_set,
            ),
        ];
        let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
        let mut failed = 0;
        let mut ran = 0;
        for (name, f) in tests {
            if filter.as_deref().is_some_and(|p| !name.contains(p)) {
                continue;
            }
            ran += 1;
            let _w = watchdog(Duration::from_secs(60));
            match std::panic::catch_unwind(f) {
                Ok(()) => println!("test {name} ... ok"),
                Err(_) => {
                    println!("test {name} ... FAILED");
                    failed += 1;
                }
            }
        }
        println!(
            "\ntest result: {}. {} passed; {failed} failed",
            if failed == 0 { "ok" } else { "FAILED" },
            ran - failed
        );
        if failed == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }
}
