//! The `shmkit` command-line tool, run as a user would run it.

#![cfg(all(feature = "cli", not(loom)))]

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::{dispatch, spawn, unique_name, watchdog, Cleanup};
use shmkit::{Event, Segment};

#[test]
fn child() {
    dispatch(&[
        ("create_keep_exit", create_keep_exit),
        ("create_and_hold", create_and_hold),
    ]);
}

/// Creates and keeps the segment `args[0]`, then exits: it is stale.
fn create_keep_exit(args: &[String]) {
    Segment::create(&args[0], 100).unwrap().keep();
}

/// Creates and keeps the segment `args[0]`, opens it a second time, sets
/// the event `args[1]`, and holds both until killed.
fn create_and_hold(args: &[String]) {
    let seg = Segment::create(&args[0], 100).unwrap();
    seg.keep();
    let _again = Segment::open(&args[0]).unwrap();
    Event::open(&args[1]).unwrap().set();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn shmkit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shmkit"))
        .args(args)
        .output()
        .expect("run shmkit")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn line_of(out: &str, name: &str) -> Option<String> {
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .map(str::to_owned)
}

#[test]
fn bad_arguments_print_usage_and_exit_2() {
    for args in [
        &[][..],
        &["frobnicate"],
        &["ls", "extra"],
        &["inspect"],
        &["inspect", "a", "b"],
        &["prune", "--force"],
    ] {
        let o = shmkit(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&o).contains("usage: shmkit ls"),
            "{args:?}: {}",
            stderr(&o)
        );
        assert!(o.stdout.is_empty(), "{args:?}");
    }
    let o = shmkit(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("shmkit prune [--dry-run]"));
}

#[test]
fn ls_and_inspect_show_a_live_segment() {
    let _w = watchdog(Duration::from_secs(60));
    let q = shmkit::Queue::create_unique(4, 16).unwrap();
    let o = shmkit(&["ls"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    let head = out.lines().next().unwrap();
    for col in ["NAME", "KIND", "SIZE", "MODE", "OWNER", "CREATOR", "USERS"] {
        assert!(head.contains(col), "{head}");
    }
    let line = line_of(&out, q.name()).unwrap_or_else(|| panic!("not listed:\n{out}"));
    let info = shmkit::inspect(q.name()).unwrap();
    let cells: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cells[1], "Queue");
    assert_eq!(cells[2], info.len.to_string());
    assert_eq!(cells[3], "0600");
    assert_eq!(cells[4], info.owner_uid.to_string());
    assert_eq!(cells[5], std::process::id().to_string());
    assert_eq!(cells[6], "(alive)");
    assert!(line.ends_with("in use"), "{line}");

    let o = shmkit(&["inspect", q.name()]);
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    assert!(out.contains("kind:     Queue"), "{out}");
    assert!(
        out.contains(&format!("pid {} (alive)", std::process::id())),
        "{out}"
    );
    assert!(out.contains("users:    in use"), "{out}");
    assert!(out.contains("stale:    no"), "{out}");
}

#[test]
fn inspect_of_a_missing_segment_fails_with_1() {
    let name = unique_name("cli-missing");
    let o = shmkit(&["inspect", &name]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
}

#[test]
fn prune_removes_a_stale_segment_and_spares_a_used_one() {
    let _w = watchdog(Duration::from_secs(120));
    let stale = unique_name("cli-stale");
    let held = unique_name("cli-held");
    let _c = Cleanup(vec![stale.clone(), held.clone()]);
    spawn("create_keep_exit", &[&stale]).join();
    let ready = Event::create_unique().unwrap();
    let holder = spawn("create_and_hold", &[&held, ready.name()]);
    assert!(ready.wait_timeout(Duration::from_secs(30)).unwrap());

    let out = stdout(&shmkit(&["ls"]));
    let line = line_of(&out, &stale).unwrap_or_else(|| panic!("not listed:\n{out}"));
    assert!(
        line.contains("(dead)") && line.ends_with("unused, stale"),
        "{line}"
    );
    let out = stdout(&shmkit(&["inspect", &stale]));
    assert!(out.contains("stale:    yes"), "{out}");

    // The dry run names it and removes nothing; a global dry run too.
    let o = shmkit(&["prune", "--dry-run", &stale, &held]);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        stdout(&o).contains(&format!("would remove {stale} ")),
        "{}",
        stdout(&o)
    );
    assert!(!stdout(&o).contains(&held));
    assert!(
        stderr(&o).contains(&format!("{held}: not stale")),
        "{}",
        stderr(&o)
    );
    let o = shmkit(&["prune", "--dry-run"]);
    assert!(
        stdout(&o).contains(&format!("would remove {stale} ")),
        "{}",
        stdout(&o)
    );
    assert!(shmkit::inspect(&stale).is_ok());

    // While the process that made and holds `held` lives, prune spares
    // it; once that process is killed, `held` is stale too.
    let o = shmkit(&["prune", &stale, &held]);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        stdout(&o).contains(&format!("removed {stale} ")),
        "{}",
        stdout(&o)
    );
    assert!(!stdout(&o).contains(&held));
    assert!(matches!(
        Segment::open(&stale),
        Err(shmkit::Error::NotFound { .. })
    ));
    assert!(shmkit::inspect(&held).is_ok());
    holder.kill();
    let o = shmkit(&["prune", &held]);
    assert!(
        stdout(&o).contains(&format!("removed {held} ")),
        "{}",
        stdout(&o)
    );
}
