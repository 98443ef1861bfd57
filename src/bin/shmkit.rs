//! `shmkit`: list, inspect and prune shmkit's shared-memory segments.
//!
//! ```text
//! shmkit ls                       every shmkit segment of this user
//! shmkit inspect NAME             one segment, in full
//! shmkit prune [--dry-run] [NAME...]
//!                                 remove stale segments (all, or the NAMEs)
//! ```
//!
//! Built with the `cli` feature: `cargo install shmkit --features cli`.
//! Exit status: 0 on success, 1 when an operation failed, 2 on bad
//! arguments.

use std::process::ExitCode;

use shmkit::SegmentInfo;

const USAGE: &str = "\
usage: shmkit ls
       shmkit inspect NAME
       shmkit prune [--dry-run] [NAME...]

  ls         list every shmkit segment of this user in /dev/shm
  inspect    show one segment: kind, size, mode, owner, creator, users
  prune      remove stale segments: their creator is dead and no live
             process has them open (all of this user's, or only the NAMEs);
             --dry-run shows what would go and removes nothing";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["ls"] => ls(),
        ["inspect", name] => inspect(name),
        ["prune", rest @ ..] => {
            let dry_run = rest.contains(&"--dry-run");
            let names: Vec<&str> = rest.iter().copied().filter(|a| *a != "--dry-run").collect();
            if let Some(bad) = names.iter().find(|a| a.starts_with('-')) {
                return usage(&format!("unknown option {bad:?}"));
            }
            prune(dry_run, &names)
        }
        ["help" | "-h" | "--help"] => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        [] => usage("no command given"),
        ["ls", ..] => usage("ls takes no arguments"),
        ["inspect"] => usage("inspect needs a NAME"),
        ["inspect", ..] => usage("inspect takes one NAME"),
        [cmd, ..] => usage(&format!("unknown command {cmd:?}")),
    }
}

fn usage(why: &str) -> ExitCode {
    eprintln!("shmkit: {why}\n{USAGE}");
    ExitCode::from(2)
}

fn fail(e: &shmkit::Error) -> ExitCode {
    eprintln!("shmkit: {e}");
    ExitCode::FAILURE
}

fn creator(s: &SegmentInfo) -> String {
    let state = if s.creator_alive { "alive" } else { "dead" };
    format!("{} ({state})", s.creator_pid)
}

fn users(s: &SegmentInfo) -> &'static str {
    match s.in_use {
        Some(true) => "in use",
        Some(false) => "unused",
        None => "unknown",
    }
}

fn ls() -> ExitCode {
    let mut all = match shmkit::list() {
        Ok(v) => v,
        Err(e) => return fail(&e),
    };
    // Segments whose creator died before finishing them: `list` cannot
    // open them, `prune` would remove them.
    if let Ok(stale) = shmkit::prune_dry_run() {
        for s in stale {
            if !all.iter().any(|a| a.name == s.name) {
                all.push(s);
            }
        }
    }
    all.sort_by(|a, b| a.name.cmp(&b.name));
    let rows: Vec<[String; 7]> = all
        .iter()
        .map(|s| {
            [
                s.name.clone(),
                s.kind.to_string(),
                s.len.to_string(),
                format!("{:04o}", s.mode),
                s.owner_uid.to_string(),
                creator(s),
                format!("{}{}", users(s), if s.is_stale() { ", stale" } else { "" }),
            ]
        })
        .collect();
    let head = ["NAME", "KIND", "SIZE", "MODE", "OWNER", "CREATOR", "USERS"];
    let mut width = head.map(str::len);
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: &[&str]| {
        let mut out = String::new();
        for (i, (c, w)) in cells.iter().zip(width).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}  "));
            }
        }
        println!("{out}");
    };
    line(&head);
    for r in &rows {
        line(&r.each_ref().map(String::as_str));
    }
    ExitCode::SUCCESS
}

fn inspect(name: &str) -> ExitCode {
    let s = match shmkit::inspect(name) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    println!("name:     {}", s.name);
    println!("kind:     {}", s.kind);
    println!("size:     {} bytes", s.len);
    println!("mode:     {:04o}", s.mode);
    println!("owner:    uid {}", s.owner_uid);
    println!("creator:  pid {}", creator(&s));
    println!("users:    {}", users(&s));
    println!(
        "stale:    {}",
        if s.is_stale() {
            "yes (`shmkit prune` removes it)"
        } else {
            "no"
        }
    );
    ExitCode::SUCCESS
}

fn prune(dry_run: bool, names: &[&str]) -> ExitCode {
    let mut status = ExitCode::SUCCESS;
    let found: Vec<SegmentInfo> = if names.is_empty() {
        let r = if dry_run {
            shmkit::prune_dry_run()
        } else {
            shmkit::prune()
        };
        match r {
            Ok(v) => v,
            Err(e) => return fail(&e),
        }
    } else {
        let mut v = Vec::new();
        for name in names {
            match shmkit::prune_name(name, dry_run) {
                Ok(Some(s)) => v.push(s),
                Ok(None) => eprintln!("shmkit: {name}: not stale (or not there), left alone"),
                Err(e) => status = fail(&e),
            }
        }
        v
    };
    let verb = if dry_run { "would remove" } else { "removed" };
    for s in &found {
        println!(
            "{verb} {} ({}, {} bytes, creator pid {} dead)",
            s.name, s.kind, s.len, s.creator_pid
        );
    }
    if found.is_empty() && names.is_empty() {
        println!("no stale segments");
    }
    status
}
