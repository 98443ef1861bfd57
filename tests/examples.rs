//! Runs every example program (`examples/`) as a user would and checks what
//! it prints, that it leaves no segment in `/dev/shm` and no worker process
//! behind — also when the tour is interrupted by Ctrl-C.
//!
//! The examples are built once, by `cargo build --examples` with this test's
//! profile and target directory, and run with `SHMKIT_EXAMPLE_QUICK=1`
//! (smaller sizes; every printed check still holds), one at a time so that
//! their worker processes do not fight over the CPUs.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use common::{unique_name, wait_for, watchdog};

/// Per test: building the examples (usually a no-op) plus running one.
const WATCHDOG: Duration = Duration::from_secs(600);
/// How long one example may run before it is killed and the test fails.
const RUN_LIMIT: Duration = Duration::from_secs(120);
/// How long `cargo build --examples` may take.
const BUILD_LIMIT: Duration = Duration::from_secs(540);

/// Where the example binaries are, after building them (once per run).
fn examples_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // This test is <target>/<profile-dir>/deps/examples-<hash>.
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
        let target_dir = profile_dir.parent().unwrap();
        let profile = match profile_dir.file_name().unwrap().to_str().unwrap() {
            "debug" => "dev".to_owned(),
            other => other.to_owned(),
        };
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo)
            .args(["build", "--examples", "--profile", &profile, "--target-dir"])
            .arg(target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run cargo build --examples");
        let err = drain(build.stderr.take().unwrap());
        let status = wait_limited(&mut build, BUILD_LIMIT, "cargo build --examples");
        let err = err.join().unwrap();
        assert!(status.success(), "cargo build --examples failed:\n{err}");
        let dir = profile_dir.join("examples");
        assert!(
            dir.join("tour").exists(),
            "no example binaries in {} after the build",
            dir.display()
        );
        dir
    })
}

/// One example at a time.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Reads a pipe to the end on a thread.
fn drain(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        s
    })
}

/// Waits for `child`, killing it and failing after `limit`.
fn wait_limited(child: &mut Child, limit: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} ran past {limit:?}: killed");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The example `name`, ready to start: quick sizes, no stdin, output piped,
/// in a process group of its own (so that a Ctrl-C can be sent to it and
/// its workers alone, as a terminal does).
fn command(name: &str) -> Command {
    let mut cmd = Command::new(examples_dir().join(name));
    cmd.env("SHMKIT_EXAMPLE_QUICK", "1")
        .env_remove("SHMKIT_TOUR_HOLD")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    cmd
}

/// What a finished example printed.
struct Run {
    pid: u32,
    status: ExitStatus,
    out: String,
    err: String,
}

impl Run {
    fn lines(&self) -> impl Iterator<Item = &str> {
        self.out.lines()
    }

    /// The first line that starts with `prefix`, or a failure that shows
    /// the whole output.
    fn line(&self, prefix: &str) -> &str {
        self.lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{}", self.out))
    }

    /// The first line that contains `part`.
    fn line_with(&self, part: &str) -> &str {
        self.lines()
            .find(|l| l.contains(part))
            .unwrap_or_else(|| panic!("no line with {part:?} in:\n{}", self.out))
    }
}

/// Runs an example to the end; fails unless it exits with 0 and leaves no
/// segment and no worker behind.
fn run(name: &str, args: &[&str]) -> Run {
    let _one = serial();
    let mut child = command(name).args(args).spawn().expect("start example");
    let pid = child.id();
    let out = drain(child.stdout.take().unwrap());
    let err = drain(child.stderr.take().unwrap());
    let status = wait_limited(&mut child, RUN_LIMIT, name);
    // Before reading to the end: a surviving worker would hold the pipes open.
    assert_clean(name, pid);
    let run = Run {
        pid,
        status,
        out: out.join().unwrap(),
        err: err.join().unwrap(),
    };
    assert!(
        run.status.success(),
        "{name} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        run.status,
        run.out,
        run.err
    );
    run
}

/// The prefix of every segment name (and so of every worker's arguments)
/// that example `name` running as `pid` makes.
fn prefix(name: &str, pid: u32) -> String {
    format!("shmkit-ex-{name}-{pid}-")
}

/// The segments in /dev/shm with this prefix.
fn segments(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|f| f.starts_with(prefix))
        .collect()
}

/// Live processes whose arguments mention `prefix`: the example's workers,
/// which get segment names in argv.
fn workers_of(prefix: &str) -> Vec<u32> {
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            // A zombie's cmdline is empty: it is dead, only not yet reaped.
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(prefix))
        })
        .collect()
}

/// No segment and (soon) no worker of example `name` run as `pid` remain.
fn assert_clean(name: &str, pid: u32) {
    let p = prefix(name, pid);
    let left = segments(&p);
    for s in &left {
        let _ = shmkit::unlink(s);
    }
    assert!(left.is_empty(), "{name} left segments behind: {left:?}");
    // Workers are killed and reaped before the example exits, or killed by
    // the kernel when it dies; allow the kernel a moment for the latter.
    let gone = wait_for(Duration::from_secs(10), || workers_of(&p).is_empty());
    assert!(gone, "{name}'s workers outlived it: {:?}", workers_of(&p));
}

/// The numbers in a printed `[a, b, c]` list.
fn parse_list(s: &str) -> Vec<u64> {
    let inner = s
        .trim()
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or_else(|| panic!("not a list: {s:?}"));
    inner
        .split(',')
        .map(|x| {
            x.trim()
                .parse()
                .unwrap_or_else(|_| panic!("not a number in {s:?}"))
        })
        .collect()
}

/// The number after `word` in `line`.
fn number_after(line: &str, word: &str) -> u64 {
    let rest = &line[line
        .find(word)
        .unwrap_or_else(|| panic!("no {word:?} in {line:?}"))
        + word.len()..];
    rest.split_whitespace()
        .next()
        .and_then(|w| w.trim_matches(|c: char| !c.is_ascii_digit()).parse().ok())
        .unwrap_or_else(|| panic!("no number after {word:?} in {line:?}"))
}

// ------------------------------------------------------------------ examples

#[test]
fn counter_locked_and_atomic_reach_400000() {
    let _w = watchdog(WATCHDOG);
    let r = run("counter", &[]);
    assert_eq!(
        number_after(r.line("locked"), "final value"),
        400_000,
        "{}",
        r.out
    );
    assert_eq!(
        number_after(r.line("fetch_add"), "final value"),
        400_000,
        "{}",
        r.out
    );
    // Lost updates are likely but not certain: only check the run happened.
    let unlocked = number_after(r.line("unlocked"), "final value");
    assert!(unlocked > 0 && unlocked <= 400_000, "{}", r.out);
}

#[test]
fn fill_array_prints_5_6_7() {
    let _w = watchdog(WATCHDOG);
    let r = run("fill_array", &[]);
    assert!(r.lines().any(|l| l == "[5, 6, 7]"), "{}", r.out);
}

#[test]
fn producer_consumer_consumes_0_to_4_in_order() {
    let _w = watchdog(WATCHDOG);
    let r = run("producer_consumer", &[]);
    let consumer: Vec<&str> = r
        .lines()
        .filter_map(|l| l.strip_prefix("consumer: got "))
        .collect();
    assert_eq!(
        consumer,
        ["0", "1", "2", "3", "4", "the sentinel, stopping"],
        "{}",
        r.out
    );
}

#[test]
fn cond_producer_consumer_consumes_every_item_once_in_order() {
    let _w = watchdog(WATCHDOG);
    let r = run("cond_producer_consumer", &[]);
    r.line("every item once: yes");
    let took: usize = r
        .lines()
        .filter_map(|l| l.trim().strip_prefix("consumer "))
        .map(|l| {
            let n = l.split("took ").nth(1).unwrap();
            n.split(' ').next().unwrap().parse::<usize>().unwrap()
        })
        .sum();
    assert_eq!(took, 400, "{}", r.out);
}

#[test]
fn server_survives_a_killed_worker_and_does_every_job() {
    let _w = watchdog(WATCHDOG);
    let r = run("server", &[]);
    r.line_with("killed worker");
    r.line_with("died; job");
    let done = r.line("server: all");
    assert!(done.contains("1 put back"), "{}", r.out);
}

#[test]
fn async_jobs_are_answered_without_blocking_the_runtime() {
    let _w = watchdog(WATCHDOG);
    let r = run("async_jobs", &[]);
    let line = r.line("async: 64 jobs");
    assert!(line.contains("85344 (expected 85344)"), "{}", r.out);
}

#[test]
fn prime_pool_agrees_with_sequential() {
    let _w = watchdog(WATCHDOG);
    let r = run("prime_pool", &[]);
    let seq = number_after(r.line("sequential:"), "sequential:");
    let pool = number_after(r.line("pool of"), "processes:");
    assert_eq!(seq, pool, "{}", r.out);
    assert!(seq > 0, "{}", r.out);
    r.line("answers agree: yes");
}

#[test]
fn lease_pool_maps_in_order_and_redoes_the_dead_workers_job() {
    let _w = watchdog(WATCHDOG);
    let r = run("lease_pool", &[]);
    let prefix = "pool map:";
    let list = parse_list(r.line(prefix).strip_prefix(prefix).unwrap());
    let want: Vec<u64> = (1..=12).map(|n| n * n).collect();
    assert_eq!(list, want, "{}", r.out);
    r.line("jobs redone after a worker died: 1;");
}

#[test]
fn squares_has_i_squared_at_every_index() {
    let _w = watchdog(WATCHDOG);
    let r = run("squares", &[]);
    for (prefix, len) in [("process per number:", 8), ("pool starmap:", 32)] {
        let list = parse_list(r.line(prefix).strip_prefix(prefix).unwrap());
        assert_eq!(list.len(), len, "{}", r.out);
        for (i, &x) in list.iter().enumerate() {
            assert_eq!(x, (i * i) as u64, "index {i} of {prefix}\n{}", r.out);
        }
    }
}

#[test]
fn speedup_draws_three_bars() {
    let _w = watchdog(WATCHDOG);
    let dir = std::env::temp_dir().join(unique_name("speedup"));
    std::fs::create_dir_all(&dir).unwrap();
    let svg = dir.join("chart.svg");
    let r = run("speedup", &[svg.to_str().unwrap()]);
    let text = std::fs::read_to_string(&svg);
    std::fs::remove_dir_all(&dir).unwrap();
    let text = text.expect("speedup.svg written");
    for how in ["sequential", "threads", "processes"] {
        r.line(how);
    }
    check_well_formed(&text);
    let bars = text
        .split('<')
        .filter(|t| t.starts_with("rect ") && t.contains("fill=\"#1F77B4\""))
        .count();
    assert_eq!(bars, 3, "bars in:\n{text}");
}

/// Every tag closed in order, one root `<svg>`.
fn check_well_formed(svg: &str) {
    let body = svg.trim();
    assert!(
        body.starts_with("<svg"),
        "not an SVG: {}",
        &body[..body.len().min(80)]
    );
    assert!(body.ends_with("</svg>"), "SVG not closed");
    let mut open: Vec<&str> = Vec::new();
    let mut roots = 0;
    let mut rest = body;
    while let Some(at) = rest.find('<') {
        let end = rest[at..].find('>').expect("unterminated tag") + at;
        let tag = &rest[at + 1..end];
        rest = &rest[end + 1..];
        if tag.starts_with('?') || tag.starts_with('!') {
            continue;
        }
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(open.pop(), Some(name.trim()), "mismatched </{name}>");
        } else if !tag.ends_with('/') {
            let name = tag.split_whitespace().next().expect("empty tag");
            if open.is_empty() {
                roots += 1;
            }
            open.push(name);
        } else if open.is_empty() {
            roots += 1;
        }
    }
    assert!(open.is_empty(), "unclosed tags {open:?}");
    assert_eq!(roots, 1, "more than one root element");
}

#[test]
fn pipe_pingpong_child_sees_disconnected() {
    let _w = watchdog(WATCHDOG);
    let r = run("pipe_pingpong", &[]);
    let line = r.line_with("round trips of");
    let trips = number_after(line, "");
    let warmup = number_after(line, "after");
    assert!(trips > 0, "{}", r.out);
    r.line("median");
    r.line("p99");
    // The echo child answered every message, then saw the parent's end go.
    let echoed = number_after(r.line("echo: the parent's end is gone"), "after");
    assert_eq!(echoed, trips + warmup, "{}", r.out);
}

#[test]
fn embed_raw_cores_in_a_shared_memory_region() {
    let _w = watchdog(WATCHDOG);
    let r = run("embed", &[]);
    let line = r.line("total under the RawLock:");
    let total = number_after(line, "RawLock:");
    let expected = number_after(line, "expected");
    assert_eq!(total, expected, "{}", r.out);
    assert!(total > 0);
    // The region is the shared_memory crate's; it too is gone.
    assert!(segments(&prefix("embed", r.pid)).is_empty());
}

#[test]
fn tour_runs() {
    let _w = watchdog(WATCHDOG);
    let r = run("tour", &[]);
    for what in ["Value", "Array", "Lock", "Event", "Pipe", "Queue"] {
        r.line(what);
    }
    assert!(number_after(r.line("CPUs:"), "CPUs:") > 0);
    r.line("left in /dev/shm: nothing");
}

// ------------------------------------------------------------------ Ctrl-C

/// Starts the tour and returns it with a channel of its stdout lines.
fn start_tour(hold: bool) -> (Child, mpsc::Receiver<String>) {
    let mut cmd = command("tour");
    if hold {
        cmd.env("SHMKIT_TOUR_HOLD", "1");
    }
    let mut child = cmd.spawn().expect("start tour");
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Reads lines until one starts with `prefix`; returns every line read.
fn read_until(rx: &mpsc::Receiver<String>, prefix: &str) -> Vec<String> {
    let deadline = Instant::now() + RUN_LIMIT;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => {
                let hit = l.starts_with(prefix);
                seen.push(l);
                if hit {
                    return seen;
                }
            }
            Err(e) => panic!("no line {prefix:?} ({e:?}); got:\n{}", seen.join("\n")),
        }
    }
}

fn sigint(pid: i32) {
    // SAFETY: kill(2) with a pid (or a negative process-group id) of a
    // process this test started and has not reaped.
    let rc = unsafe { libc::kill(pid, libc::SIGINT) };
    assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
}

/// Ctrl-C to the tour alone while its workers are blocked on an `Event`:
/// it notices, kills its workers, unlinks every segment and exits with 130.
#[test]
fn tour_ctrl_c_mid_run_cleans_up() {
    let _w = watchdog(WATCHDOG);
    let _one = serial();
    let (mut tour, rx) = start_tour(true);
    let pid = tour.id();
    let p = prefix("tour", pid);
    let mut seen = read_until(&rx, "Event  holding");
    let workers = workers_of(&p);
    assert!(!workers.is_empty(), "no workers found while holding");
    assert!(!segments(&p).is_empty(), "no segments found while holding");

    sigint(pid as i32);
    let status = wait_limited(&mut tour, RUN_LIMIT, "interrupted tour");
    assert_clean("tour", pid);
    seen.extend(rx.iter());
    let out = seen.join("\n");
    assert_eq!(status.code(), Some(130), "{status}\n{out}");
    assert!(out.contains("interrupted"), "{out}");
    assert!(out.contains("left in /dev/shm: nothing"), "{out}");
}

/// Ctrl-C as a terminal sends it (to the tour and its workers) at several
/// points of the run: whatever step it hits, the tour exits (0 if it had
/// finished, else 130) and nothing is left behind.
#[test]
fn tour_ctrl_c_anywhere_cleans_up() {
    let _w = watchdog(WATCHDOG);
    for delay_ms in [0, 2, 5, 10, 20, 40] {
        let _one = serial();
        let (mut tour, rx) = start_tour(false);
        let pid = tour.id();
        let mut seen = read_until(&rx, "shmkit tour:");
        std::thread::sleep(Duration::from_millis(delay_ms));
        if tour.try_wait().unwrap().is_none() {
            sigint(-(pid as i32)); // its process group
        }
        let status = wait_limited(&mut tour, RUN_LIMIT, "interrupted tour");
        assert_clean("tour", pid);
        seen.extend(rx.iter());
        let out = seen.join("\n");
        match status.code() {
            Some(0) => assert!(out.contains("CPUs:"), "{out}"),
            Some(130) => assert!(out.contains("interrupted"), "{out}"),
            _ => panic!("tour interrupted after {delay_ms} ms: {status}\n{out}"),
        }
        assert!(out.contains("left in /dev/shm: nothing"), "{out}");
    }
}

#[test]
fn download_pool_never_exceeds_its_limit_and_recovers_the_crashed_permit() {
    let _w = watchdog(WATCHDOG);
    let r = run("download_pool", &[]);
    assert_eq!(
        number_after(r.line("downloads done:"), "done:"),
        9,
        "{}",
        r.out
    );
    let peak = number_after(r.line("peak at once:"), "once:");
    assert!((1..=3).contains(&peak), "peak {peak}\n{}", r.out);
    assert_eq!(
        number_after(r.line("permits free at the end:"), "end:"),
        3,
        "the crashed download's permit did not come back\n{}",
        r.out
    );
    r.line_with("crashed holding its permit");
    // The crashed permit came back exactly once: to a worker that found
    // none free, or, if the workers never needed it, by the final
    // `reclaim` (which of the two depends on how the workers overlapped).
    let by_worker = r
        .out
        .lines()
        .filter(|l| l.contains("on a permit recovered from a dead process"))
        .count() as u64;
    let at_end = number_after(r.line("permits free at the end:"), "(");
    assert_eq!(by_worker + at_end, 1, "{}", r.out);
}

#[test]
fn lockstep_matches_a_sequential_run() {
    let _w = watchdog(WATCHDOG);
    let r = run("lockstep", &[]);
    let got = parse_list(r.line("lockstep:").strip_prefix("lockstep:").unwrap());
    let want = parse_list(r.line("sequential:").strip_prefix("sequential:").unwrap());
    assert!(!got.is_empty(), "{}", r.out);
    assert_eq!(got, want, "{}", r.out);
    r.line("match: true");
    r.line("phases counted by the action: 20");
    // The index-0 party of each trip reports its phase: once per phase.
    for p in 0..20 {
        let tag = format!("phase {p} done");
        let n = r.out.lines().filter(|l| l.contains(&tag)).count();
        assert_eq!(n, 1, "{tag}\n{}", r.out);
    }
}
