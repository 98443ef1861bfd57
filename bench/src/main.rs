//! shmkit's cross-process comparison against its peers (issue 6).
//!
//! ```text
//! cd bench && cargo run --release                # full run (~5 min), writes results/ and BENCHMARKS.md's table
//! cd bench && cargo run --release -- --quick     # smoke test (< 30 s), writes target/results-partial/ only
//! cd bench && cargo run --release -- --render    # rewrite results.md, chart.svg, BENCHMARKS.md from results.json
//! ```
//!
//! Every cross-process figure comes from real processes: this binary
//! re-executes itself with `--role NAME` for each side (see `roles.rs`).
#![allow(clippy::disallowed_types)] // the harness is not shmkit: std atomics are fine here

mod chart;
mod ice;
mod report;
mod roles;
mod transport;
mod util;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use report::*;
use roles::{create_lock, new_ctl, LockKind, PthreadCtr, RecKind, TpResult};
use transport::{make_fds, Cfg, Transport};
use util::{close, ctl, spawn, stats, Kid, Res, Said, SpawnOpts, Stats};

const G_VALUE: &str = "Value<u64> update, uncontended (one process)";

/// The order of the report's sections.
const GROUP_ORDER: [&str; 16] = [
    G_RT8,
    G_RT64,
    G_RT4K,
    G_RT64_1CPU,
    G_TP64,
    G_TP4K,
    G_TP1M,
    G_RT64_LOADED,
    G_TP64_LOADED,
    G_SCALE,
    G_LOCK,
    G_VALUE,
    G_LOCK2,
    G_COUNTER,
    G_SEG,
    G_RECOVER,
];

/// Sample counts and durations.
#[derive(Clone)]
struct Plan {
    quick: bool,
    lat_n: usize,
    lat_warm: usize,
    tp_secs: f64,
    tp_warm: f64,
    scale_secs: f64,
    scale_warm: f64,
    lock_batches: usize,
    lock_batch: usize,
    contend_per_round: usize,
    contend_rounds: u32,
    counter_n: usize,
    counter_rounds: u32,
    py_counter_rounds: u32,
    seg_n: usize,
    rec_trials: usize,
    limit_secs: u32,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                quick,
                lat_n: 300,
                lat_warm: 50,
                tp_secs: 0.05,
                tp_warm: 0.02,
                scale_secs: 0.1,
                scale_warm: 0.03,
                lock_batches: 20,
                lock_batch: 1000,
                contend_per_round: 5_000,
                contend_rounds: 3,
                counter_n: 10_000,
                counter_rounds: 2,
                py_counter_rounds: 1,
                seg_n: 100,
                rec_trials: 15,
                limit_secs: 60,
            }
        } else {
            Plan {
                quick,
                lat_n: 20_000,
                lat_warm: 2_000,
                tp_secs: 2.0,
                tp_warm: 0.5,
                scale_secs: 3.0,
                scale_warm: 0.5,
                lock_batches: 500,
                lock_batch: 10_000,
                contend_per_round: 50_000,
                contend_rounds: 40,
                counter_n: 100_000,
                counter_rounds: 30,
                py_counter_rounds: 5,
                seg_n: 5_000,
                rec_trials: 200,
                limit_secs: 180,
            }
        }
    }

    fn settings(&self) -> Vec<String> {
        vec![
            format!(
                "round trips: {} timed after {} warm-up, one clock read pair per round trip",
                self.lat_n, self.lat_warm
            ),
            format!(
                "throughput: {} s measured after {} s warm-up, one sample per ~1 MiB batch",
                self.tp_secs, self.tp_warm
            ),
            format!(
                "scaling: {} s after {} s warm-up, one sample per 10 ms",
                self.scale_secs, self.scale_warm
            ),
            format!(
                "uncontended locks: {} batches of {} operations",
                self.lock_batches, self.lock_batch
            ),
            format!(
                "contention: {} rounds of {} increments per participant",
                self.contend_rounds, self.contend_per_round
            ),
            format!(
                "counter: 4 processes × {} increments, {} rounds (Python: {})",
                self.counter_n, self.counter_rounds, self.py_counter_rounds
            ),
            format!("segments: {} create + map + unlink", self.seg_n),
            format!(
                "loaded: one busy-loop process per CPU ({}), pinned to it, at normal priority, \
                 from before the section's first row to after its last",
                util::cpus().len()
            ),
            format!(
                "recovery: {} trials per contender, fresh processes each; the kill comes once the \
                 survivor's thread has slept {} ms in its blocking call; CLOCK_MONOTONIC read by \
                 the harness just before kill(2) to the survivor's read right after it noticed",
                self.rec_trials,
                REC_SETTLE.as_millis()
            ),
        ]
    }

    fn opts(&self) -> SpawnOpts {
        SpawnOpts {
            cpu: None,
            fds: vec![],
            limit_secs: self.limit_secs,
        }
    }

    fn answer_limit(&self) -> Duration {
        Duration::from_secs(u64::from(self.limit_secs))
    }
}

struct Cli {
    quick: bool,
    out: PathBuf,
    doc: Option<PathBuf>,
    render_only: bool,
    only: Option<Vec<String>>,
}

fn usage() -> ! {
    eprintln!(
        "usage: compare [--quick] [--out DIR] [--doc FILE | --no-doc] [--render] [--only SECTIONS]\n\
         \n\
         --quick        tiny sample counts (smoke test, < 30 s); BENCHMARKS.md is left alone\n\
         --out DIR      where results.md, results.json and chart.svg go (default bench/results\n\
                        for a full run, bench/target/results-partial for --quick or --only)\n\
         --doc FILE     the document whose generated section is rewritten\n\
                        (default ../BENCHMARKS.md for a full run)\n\
         --no-doc       do not touch BENCHMARKS.md\n\
         --render       measure nothing: rewrite results.md, chart.svg and the document\n\
                        from DIR/results.json\n\
         --only LIST    comma-separated sections:\n\
                        rt,cpu1,tp,loaded,scale,lock,contend,counter,seg,recover,py,mem"
    );
    std::process::exit(2)
}

fn cli() -> Cli {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut out = None;
    let mut c = Cli {
        quick: false,
        out: PathBuf::new(),
        doc: None,
        render_only: false,
        only: None,
    };
    let mut doc_default = true;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => c.quick = true,
            "--out" => out = Some(PathBuf::from(args.next().unwrap_or_else(|| usage()))),
            "--doc" => c.doc = Some(PathBuf::from(args.next().unwrap_or_else(|| usage()))),
            "--no-doc" => doc_default = false,
            "--render" => c.render_only = true,
            "--only" => {
                c.only = Some(
                    args.next()
                        .unwrap_or_else(|| usage())
                        .split(',')
                        .map(str::to_owned)
                        .collect(),
                )
            }
            // `cargo bench` passes this to every bench binary.
            "--bench" => {}
            "-h" | "--help" => usage(),
            _ => {
                eprintln!("unknown argument {a}");
                usage()
            }
        }
    }
    let full = !c.quick && c.only.is_none();
    // Smoke tests and partial runs never overwrite the committed results.
    c.out = out.unwrap_or_else(|| {
        if full || c.render_only {
            manifest.join("results")
        } else {
            manifest.join("target").join("results-partial")
        }
    });
    if c.doc.is_none() && doc_default && (full || c.render_only) {
        c.doc = Some(manifest.join("..").join("BENCHMARKS.md"));
    }
    if !doc_default {
        c.doc = None;
    }
    c
}

fn main() {
    if let Some((role, args)) = util::role_args() {
        roles::run(&role, &args);
    }
    let cli = cli();
    if let Err(e) = run(&cli) {
        eprintln!("compare: {e}");
        std::process::exit(1);
    }
}

fn run(cli: &Cli) -> Res<()> {
    std::fs::create_dir_all(&cli.out)?;
    let json_path = cli.out.join("results.json");
    let res = if cli.render_only {
        serde_json::from_str::<Results>(&std::fs::read_to_string(&json_path)?)?
    } else {
        let r = measure(cli)?;
        std::fs::write(&json_path, serde_json::to_string_pretty(&r)?)?;
        r
    };
    let chart_path = cli.out.join("chart.svg");
    chart::draw(&res, &chart_path)?;
    let body = render(&res, "chart.svg", "##");
    let md = format!("# shmkit compared with its peers\n\n{body}");
    std::fs::write(cli.out.join("results.md"), &md)?;
    println!("{md}");
    eprintln!(
        "wrote {}, {} and {}",
        cli.out.join("results.md").display(),
        json_path.display(),
        chart_path.display()
    );
    if let Some(doc) = &cli.doc {
        let text = std::fs::read_to_string(doc)
            .map_err(|e| format!("cannot read {}: {e}", doc.display()))?;
        let rel = relative_chart(doc, &chart_path);
        let section = render(&res, &rel, "###");
        match splice(&text, &section) {
            Some(new) => {
                std::fs::write(doc, new)?;
                let shown = std::fs::canonicalize(doc).unwrap_or_else(|_| doc.clone());
                eprintln!("updated the generated section of {}", shown.display());
            }
            None => eprintln!(
                "{} has no generated section ({BEGIN} … {END}): left alone",
                doc.display()
            ),
        }
    }
    Ok(())
}

/// The chart's path as the document links it.
fn relative_chart(doc: &std::path::Path, chart: &std::path::Path) -> String {
    let d = std::fs::canonicalize(doc.parent().unwrap_or(std::path::Path::new(".")));
    let c = std::fs::canonicalize(chart);
    match (d, c) {
        (Ok(d), Ok(c)) => match c.strip_prefix(&d) {
            Ok(rel) => rel.display().to_string(),
            Err(_) => c.display().to_string(),
        },
        _ => chart.display().to_string(),
    }
}

// ---------------------------------------------------------------------------

struct Run {
    plan: Plan,
    rows: Vec<Row>,
    start: Instant,
}

impl Run {
    fn push(&mut self, r: Row) {
        let t = self.start.elapsed().as_secs_f64();
        match (&r.skipped, r.median, r.p99) {
            (Some(why), _, _) => {
                eprintln!(
                    "[{t:5.1}s] {} | {}: not measured: {why}",
                    r.group, r.contender
                )
            }
            (None, Some(m), Some(p)) => {
                let f = |v| match r.unit {
                    Unit::Ns => fmt_ns(v),
                    Unit::PerSec => fmt_rate(v),
                };
                eprintln!(
                    "[{t:5.1}s] {} | {}: median {}, p99 {}",
                    r.group,
                    r.contender,
                    f(m),
                    f(p)
                )
            }
            _ => {}
        }
        self.rows.push(r);
    }
}

fn measure(cli: &Cli) -> Res<Results> {
    let plan = Plan::new(cli.quick);
    let on = |s: &str| cli.only.as_ref().is_none_or(|o| o.iter().any(|x| x == s));
    let mut meta = gather_meta(cli);
    meta.settings = plan.settings();
    meta.clock_ns = util::clock_cost_ns();
    let mut run = Run {
        plan: plan.clone(),
        rows: Vec::new(),
        start: Instant::now(),
    };
    let mut memory = Vec::new();
    if on("rt") {
        latency(&mut run, 8, G_RT8, None, &RT_ALL)?;
        latency(&mut run, 64, G_RT64, None, &RT_ALL)?;
        latency(&mut run, 4096, G_RT4K, None, &RT_ALL)?;
    }
    if on("cpu1") {
        latency(&mut run, 64, G_RT64_1CPU, Some(0), &RT_1CPU)?;
    }
    if on("tp") {
        for (size, g) in [(64, G_TP64), (4096, G_TP4K), (1 << 20, G_TP1M)] {
            throughput(&mut run, size, g, &TP_ALL)?;
        }
    }
    if on("loaded") {
        loaded(&mut run)?;
    }
    if on("scale") {
        scaling(&mut run)?;
    }
    if on("lock") {
        uncontended(&mut run)?;
    }
    if on("contend") {
        contention(&mut run)?;
    }
    if on("counter") {
        counter(&mut run)?;
    }
    if on("seg") {
        segments(&mut run)?;
    }
    if on("recover") {
        recovery(&mut run)?;
    }
    if on("py") {
        python(&mut run, &mut meta)?;
    }
    if on("mem") {
        memory = memory_rows(&mut run)?;
    }
    let mut rows = run.rows;
    rows.sort_by_key(|r| {
        GROUP_ORDER
            .iter()
            .position(|g| *g == r.group)
            .unwrap_or(usize::MAX)
    });
    meta.seconds = run.start.elapsed().as_secs_f64();
    meta.load_after = loadavg();
    Ok(Results { meta, rows, memory })
}

// ---------------------------------------------------------------------------
// Two-process measurements.

enum Outcome {
    Done(String, Vec<u64>),
    Skipped(String),
}

/// Runs side A (`role_a`) and side B (`role_b`) of one contender.
fn two_party(
    plan: &Plan,
    role_a: &str,
    role_b: &str,
    cfg: &Cfg,
    cpus: Option<(usize, usize)>,
) -> Res<Outcome> {
    let (fa, fb) = make_fds(cfg.transport)?;
    let mut ca = cfg.clone();
    ca.fds = fa.clone();
    let mut oa = plan.opts();
    oa.fds = fa.clone();
    oa.cpu = cpus.map(|c| c.0);
    let mut ob = plan.opts();
    ob.fds = fb.clone();
    ob.cpu = cpus.map(|c| c.1);
    let closeall = || {
        for fd in fa.iter().chain(&fb) {
            close(*fd);
        }
    };
    let mut a = match spawn(role_a, &[serde_json::to_string(&ca)?], &oa) {
        Ok(k) => k,
        Err(e) => {
            closeall();
            return Err(e);
        }
    };
    let token = match a.next(plan.answer_limit(), &mut []) {
        Ok(Said::Ready(t)) => t,
        Ok(Said::Skip(why)) => {
            closeall();
            return Ok(Outcome::Skipped(why));
        }
        Ok(Said::Result(_)) => {
            closeall();
            return util::err("side A answered before it was ready");
        }
        Err(e) => {
            closeall();
            return Ok(Outcome::Skipped(e.to_string()));
        }
    };
    let mut cb = cfg.clone();
    cb.fds = fb.clone();
    cb.token = token;
    let b = spawn(role_b, &[serde_json::to_string(&cb)?], &ob);
    closeall();
    let mut b = b?;
    let out = match a.next(plan.answer_limit(), &mut [&mut b]) {
        Ok(Said::Result(j)) => j,
        Ok(Said::Skip(why)) => return Ok(Outcome::Skipped(why)),
        Ok(Said::Ready(_)) => return util::err("side A said READY twice"),
        Err(e) => return Ok(Outcome::Skipped(format!("failed: {e}"))),
    };
    let limit = Duration::from_secs(30);
    let ra = a.finish(limit);
    let rb = b.finish(limit);
    match (ra, rb) {
        (Ok(x), Ok(y)) => Ok(Outcome::Done(out, vec![x, y])),
        (Err(e), _) | (_, Err(e)) => Ok(Outcome::Skipped(format!("failed: {e}"))),
    }
}

fn base_cfg(t: Transport, size: usize) -> Cfg {
    Cfg {
        transport: t,
        size,
        cap: 0,
        name: util::unique("x"),
        token: String::new(),
        fds: vec![],
        n: 0,
        warmup: 0,
        secs: 0.0,
        warm_secs: 0.0,
        ctl: String::new(),
        stream: false,
    }
}

fn transport_note(t: Transport) -> &'static str {
    match t {
        Transport::ShmPipe => "default settings; send / recv_into",
        Transport::ShmQueue => "default settings; put / get_into",
        Transport::ShmPipeNever => {
            "Spin::Never on every handle of both processes; send / recv_into"
        }
        Transport::ShmQueueNever => "Spin::Never on every handle of both processes; put / get_into",
        Transport::ShmPipeZc => {
            "reserve + commit / recv_ref: the message is written and read in place (every byte)"
        }
        Transport::ShmQueueZc => {
            "reserve + commit / get_ref: the message is written and read in place (every byte)"
        }
        Transport::ShmQueueLease => {
            "put / get_lease + copy out + ack: a message whose consumer dies is delivered again"
        }
        Transport::OsPipe => "write / read_exact",
        Transport::SocketPair => "SOCK_STREAM; write / read_exact",
        Transport::PosixMq => "mq_send / mq_receive, 10 deep",
        Transport::Futex => {
            "a flag word; every wait sleeps in FUTEX_WAIT, every send is a FUTEX_WAKE"
        }
        Transport::Spin => "a flag word; the waiter busy-waits (no sleeping)",
        Transport::IpcChannel => "IpcBytesSender / IpcBytesReceiver (recv allocates)",
        Transport::Interprocess => "local socket (abstract Unix socket), write_all / read_exact",
        Transport::RawSyncEvent => "two auto-reset Events (pthread cond) + a shared buffer",
        Transport::Iceoryx2 => {
            "0.10, publish-subscribe of [u8]: loan_slice_uninit + write_from_slice + send / \
             receive + copy out; the receiver polls (spins): a subscriber has no blocking \
             receive; lossless: facing a full buffer the publisher retries \
             (RetryUntilDelivered: it spins, yields, then sleeps 100 µs to 10 ms)"
        }
    }
}

/// The round-trip contenders on CPUs the scheduler picks.
const RT_ALL: [Transport; 13] = [
    Transport::ShmPipe,
    Transport::ShmQueue,
    Transport::Spin,
    // Next to the row they are held against (issue 9's target).
    Transport::ShmPipeNever,
    Transport::ShmQueueNever,
    Transport::Futex,
    Transport::OsPipe,
    Transport::SocketPair,
    Transport::PosixMq,
    Transport::IpcChannel,
    Transport::Interprocess,
    Transport::RawSyncEvent,
    Transport::Iceoryx2,
];

/// With both processes on one CPU (no spinner: it would wait for preemption).
const RT_1CPU: [Transport; 7] = [
    Transport::ShmPipe,
    Transport::ShmQueue,
    Transport::ShmPipeNever,
    Transport::ShmQueueNever,
    Transport::OsPipe,
    Transport::SocketPair,
    Transport::Futex,
];

const TP_ALL: [Transport; 11] = [
    Transport::ShmPipe,
    Transport::ShmPipeZc,
    Transport::ShmQueue,
    Transport::ShmQueueZc,
    Transport::ShmQueueLease,
    Transport::OsPipe,
    Transport::SocketPair,
    Transport::PosixMq,
    Transport::IpcChannel,
    Transport::Interprocess,
    Transport::Iceoryx2,
];

/// Under load (issue 13): shmkit with default settings and blocking-only,
/// against the two that always sleep.
const LOADED: [Transport; 6] = [
    Transport::ShmPipe,
    Transport::ShmQueue,
    Transport::ShmPipeNever,
    Transport::ShmQueueNever,
    Transport::Futex,
    Transport::OsPipe,
];

fn latency(
    run: &mut Run,
    size: usize,
    group: &str,
    cpu: Option<usize>,
    list: &[Transport],
) -> Res<()> {
    for &t in list {
        let mut row = Row::new(group, t.label(), Unit::Ns).note(transport_note(t));
        if t == Transport::ShmPipe {
            row = row.reference();
        }
        if matches!(t, Transport::ShmQueue | Transport::ShmQueueNever) {
            row = row.note("capacity 64");
        }
        let mut cfg = base_cfg(t, size);
        cfg.n = run.plan.lat_n;
        cfg.warmup = run.plan.lat_warm;
        cfg.cap = match t {
            Transport::ShmQueue | Transport::ShmQueueNever => 64,
            Transport::Iceoryx2 => 4,
            _ => 0,
        };
        row.bytes = Some(size);
        let cpus = cpu.map(|c| (c, c));
        let out = two_party(&run.plan, "lat-a", "lat-b", &cfg, cpus)?;
        stats_row(run, row, out)?;
    }
    if group == G_RT64 {
        // shmkit Pipe's spin budget adapts per process pair: measure fresh
        // pairs again, to show whether it settles the same way each time.
        for rep in 1..=2 {
            let t = Transport::ShmPipe;
            let row = Row::new(group, &format!("shmkit Pipe, repeat {rep}"), Unit::Ns).note(
                "the first row's measurement again, on a fresh pair of processes \
                 (the adaptive spin may settle differently)",
            );
            let mut cfg = base_cfg(t, size);
            cfg.n = run.plan.lat_n;
            cfg.warmup = run.plan.lat_warm;
            let out = two_party(&run.plan, "lat-a", "lat-b", &cfg, None)?;
            stats_row(run, row, out)?;
        }
    }
    if cpu.is_some() {
        run.push(Row::new(group, Transport::Spin.label(), Unit::Ns).skip(
            "a busy-waiter on the peer's CPU only advances when the scheduler preempts it (milliseconds per round trip)",
        ));
    }
    Ok(())
}

fn throughput(run: &mut Run, size: usize, group: &str, list: &[Transport]) -> Res<()> {
    for &t in list {
        let mut row = Row::new(group, t.label(), Unit::PerSec).note(transport_note(t));
        row.bytes = Some(size);
        if t == Transport::ShmPipe {
            row = row.reference();
        }
        let mut cfg = base_cfg(t, size);
        cfg.secs = run.plan.tp_secs;
        cfg.warm_secs = run.plan.tp_warm;
        cfg.cap = match t {
            Transport::ShmQueue
            | Transport::ShmQueueZc
            | Transport::ShmQueueLease
            | Transport::ShmQueueNever
            | Transport::Iceoryx2 => (65536 / size).max(4),
            // A zero-copy message must fit in the ring (twice, for wrapping).
            Transport::ShmPipeZc if 2 * size + 64 > shmkit::DEFAULT_PIPE_CAPACITY => {
                (4 * size).next_power_of_two()
            }
            _ => 0,
        };
        match t {
            Transport::ShmQueue
            | Transport::ShmQueueZc
            | Transport::ShmQueueLease
            | Transport::ShmQueueNever
            | Transport::Iceoryx2 => {
                row = row.note(format!("capacity {} × {}", cfg.cap, fmt_size(size as u64)))
            }
            Transport::Futex => {
                row = row.note(
                    "one slot: the producer sleeps (FUTEX_WAIT) until the consumer has \
                     taken each message, and the consumer wakes it (FUTEX_WAKE) for every one",
                )
            }
            Transport::ShmPipeZc if cfg.cap > 0 => {
                row = row.note(format!(
                    "ring {} (the default 64 KiB cannot hold it)",
                    fmt_size(cfg.cap as u64)
                ))
            }
            Transport::ShmPipe if size > shmkit::DEFAULT_PIPE_CAPACITY => {
                row = row.note("streamed through the 64 KiB default ring")
            }
            _ => {}
        }
        let (ctl_name, _ctl) = new_ctl()?;
        cfg.ctl = ctl_name;
        cfg.stream = true;
        match two_party(&run.plan, "tp-a", "tp-b", &cfg, None)? {
            Outcome::Done(j, rss) => {
                let r: TpResult = serde_json::from_str(&j)?;
                row.median = Some(r.rate.median);
                row.p99 = Some(r.rate.p99);
                row.n = r.rate.n;
                row.rss_kib = rss;
                run.push(row);
            }
            Outcome::Skipped(why) => run.push(row.skip(why)),
        }
    }
    Ok(())
}

/// The loaded section: the 64 B round trip and throughput of `LOADED`
/// while one CPU-bound process per CPU runs (issue 13).
fn loaded(run: &mut Run) -> Res<()> {
    let mut hogs = Hogs::start(&run.plan)?;
    latency(run, 64, G_RT64_LOADED, None, &LOADED)?;
    throughput(run, 64, G_TP64_LOADED, &LOADED)?;
    // The load must have lasted the whole section.
    if let Some(why) = hogs.ended() {
        for r in run.rows.iter_mut() {
            if r.group == G_RT64_LOADED || r.group == G_TP64_LOADED {
                r.note = format!("{}; {why}: the load may not have lasted", r.note);
            }
        }
    }
    Ok(())
}

/// How long a hog may run before its own alarm ends it (a watchdog only:
/// it dies with the harness, and the section drops it when done).
const HOG_LIMIT_SECS: u32 = 3600;

/// One busy-looping process pinned to each CPU, at normal priority; they
/// are killed when this is dropped.
struct Hogs(Vec<Kid>);

impl Hogs {
    fn start(plan: &Plan) -> Res<Hogs> {
        let mut kids = Vec::new();
        for cpu in util::cpus() {
            let mut o = plan.opts();
            o.cpu = Some(cpu);
            o.limit_secs = HOG_LIMIT_SECS;
            let mut k = spawn("hog", &[], &o)?;
            expect_ready(&mut k, plan.answer_limit(), &mut [])?;
            kids.push(k);
        }
        Ok(Hogs(kids))
    }

    /// Says which hog ended before it was killed, if one did.
    fn ended(&mut self) -> Option<String> {
        self.0.iter_mut().find_map(|k| {
            k.poll_exit()
                .map(|(st, _)| format!("hog {} ended ({st:#x})", k.pid))
        })
    }
}

// ---------------------------------------------------------------------------
// Queue scaling.

fn scaling(run: &mut Run) -> Res<()> {
    let mut base = None;
    for p in [1usize, 2, 4] {
        let label = format!("shmkit Queue, {p} + {p} processes");
        let mut row = Row::new(G_SCALE, &label, Unit::PerSec);
        row.bytes = Some(64);
        if p == 1 {
            row = row.reference();
        }
        match scale_one(&run.plan, p) {
            Ok((s, rss, total, stalls)) => {
                row.median = Some(s.median);
                row.p99 = Some(s.p99);
                row.n = s.n;
                row.rss_kib = rss;
                let b = *base.get_or_insert(s.median);
                row = row.note(format!(
                    "{}× the 1 + 1 rate; capacity 1024; {total} messages, all accounted for; \
                     {stalls} of {} 10 ms windows without a message",
                    sig(s.median / b),
                    s.n
                ));
                run.push(row);
            }
            Err(e) => run.push(row.skip(format!("failed: {e}"))),
        }
    }
    Ok(())
}

fn scale_one(plan: &Plan, p: usize) -> Res<(Stats, Vec<u64>, u64, usize)> {
    let size = 64;
    let q = shmkit::Queue::create(&util::unique("q"), 1024, size)?;
    let (ctl_name, ctl_shm) = new_ctl()?;
    let c = ctl(&ctl_shm);
    let mut kids: Vec<Kid> = Vec::new();
    for id in 0..p {
        for role in ["scale-cons", "scale-prod"] {
            let args = vec![
                q.name().to_owned(),
                ctl_name.clone(),
                id.to_string(),
                size.to_string(),
            ];
            kids.push(spawn(role, &args, &plan.opts())?);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.ready.0.load(Ordering::Acquire) < 2 * p as u32 {
        check_kids(&mut kids)?;
        if Instant::now() > deadline {
            return util::err("participants did not start");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let consumed = || -> u64 { (0..p).map(|i| c.counts[i].0.load(Ordering::Relaxed)).sum() };
    c.go.0.store(1, Ordering::Release);
    let t0 = Instant::now();
    let warm = Duration::from_secs_f64(plan.scale_warm);
    let end = warm + Duration::from_secs_f64(plan.scale_secs);
    let mut rates = Vec::new();
    let mut last: Option<(Instant, u64)> = None;
    loop {
        std::thread::sleep(Duration::from_millis(10));
        let now = Instant::now();
        let n = consumed();
        if now - t0 >= warm {
            if let Some((lt, ln)) = last {
                rates.push((n - ln) as f64 / (now - lt).as_secs_f64());
            }
            last = Some((now, n));
        }
        if now - t0 >= end {
            break;
        }
        check_kids(&mut kids)?;
    }
    c.stop.0.store(1, Ordering::Release);
    // Producers stop; then close the queue so consumers drain and leave.
    let mut rss = Vec::new();
    for k in kids.iter_mut().filter(|k| k.role == "scale-prod") {
        rss.push(k.finish(Duration::from_secs(30))?);
    }
    q.close();
    for k in kids.iter_mut().filter(|k| k.role == "scale-cons") {
        rss.push(k.finish(Duration::from_secs(30))?);
    }
    let produced: u64 = (0..p)
        .map(|i| c.counts[8 + i].0.load(Ordering::Acquire))
        .sum();
    let got = consumed();
    if produced != got {
        return util::err(format!("{produced} messages put, {got} taken"));
    }
    roles::dump_samples(&format!("scale-{p}"), &rates)?;
    let stalls = rates.iter().filter(|r| **r == 0.0).count();
    Ok((stats(&mut rates, false), rss, got, stalls))
}

fn check_kids(kids: &mut [Kid]) -> Res<()> {
    for k in kids.iter_mut() {
        if let Some((st, _)) = k.poll_exit() {
            if !(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0) {
                return util::err(format!("child {} failed (status {st:#x})", k.role));
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Locks.

fn one_shot(plan: &Plan, role: &str, args: &[String]) -> Res<Outcome> {
    let mut k = spawn(role, args, &plan.opts())?;
    match k.next(plan.answer_limit(), &mut []) {
        Ok(Said::Result(j)) => {
            let rss = k.finish(Duration::from_secs(30))?;
            Ok(Outcome::Done(j, vec![rss]))
        }
        Ok(Said::Skip(why)) => Ok(Outcome::Skipped(why)),
        Ok(Said::Ready(_)) => util::err("unexpected READY"),
        Err(e) => Ok(Outcome::Skipped(format!("failed: {e}"))),
    }
}

fn stats_row(run: &mut Run, mut row: Row, out: Outcome) -> Res<()> {
    match out {
        Outcome::Done(j, rss) => {
            let s: Stats = serde_json::from_str(&j)?;
            row.median = Some(s.median);
            row.p99 = Some(s.p99);
            row.n = s.n;
            row.rss_kib = rss;
            run.push(row);
        }
        Outcome::Skipped(why) => run.push(row.skip(why)),
    }
    Ok(())
}

fn uncontended(run: &mut Run) -> Res<()> {
    let b = run.plan.lock_batches.to_string();
    let n = run.plan.lock_batch.to_string();
    let groups = [
        (
            G_LOCK,
            vec![
                LockKind::ShmLock,
                LockKind::CasStore,
                LockKind::Pthread,
                LockKind::PthreadRobust,
                LockKind::RawSync,
                LockKind::StdMutex,
            ],
        ),
        (
            G_VALUE,
            vec![
                LockKind::ValueFetchAdd,
                LockKind::BareAtomic,
                LockKind::ValueLock,
            ],
        ),
    ];
    for (g, kinds) in groups {
        for (i, k) in kinds.into_iter().enumerate() {
            let mut row =
                Row::new(g, k.label(), Unit::Ns).note(format!("per operation; batches of {n}"));
            if i == 0 {
                row = row.reference();
            }
            let out = one_shot(&run.plan, "uncontended", &[k.arg(), b.clone(), n.clone()])?;
            stats_row(run, row, out)?;
        }
    }
    Ok(())
}

/// `procs` processes (each with `threads` participants) increment a
/// shared counter under the lock; one sample per round.
fn contend_run(
    plan: &Plan,
    kind: LockKind,
    procs: usize,
    threads: usize,
    per_round: usize,
    rounds: u32,
) -> Res<(Stats, Vec<u64>)> {
    let name = util::unique("lk");
    let holder = create_lock(kind, &name)?;
    let (ctl_name, ctl_shm) = new_ctl()?;
    let c = ctl(&ctl_shm);
    let mut kids = Vec::new();
    for _ in 0..procs {
        let args = vec![
            kind.arg(),
            name.clone(),
            ctl_name.clone(),
            threads.to_string(),
            per_round.to_string(),
            rounds.to_string(),
        ];
        kids.push(spawn("contend", &args, &plan.opts())?);
    }
    let parts = (procs * threads) as u32;
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.ready.0.load(Ordering::Acquire) < parts {
        check_kids(&mut kids)?;
        if Instant::now() > deadline {
            return util::err("participants did not start");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut v = Vec::new();
    for r in 1..=rounds {
        let t0 = Instant::now();
        c.go.0.store(r, Ordering::Release);
        let mut polls = 0u32;
        while c.done.0.load(Ordering::Acquire) < parts * r {
            std::thread::sleep(Duration::from_micros(100));
            polls += 1;
            if polls.is_multiple_of(1000) {
                check_kids(&mut kids)?;
            }
        }
        v.push(t0.elapsed().as_nanos() as f64 / (parts as usize * per_round) as f64);
    }
    let mut rss = Vec::new();
    for k in kids.iter_mut() {
        rss.push(k.finish(Duration::from_secs(30))?);
    }
    if let Some(ctr) = &holder.ctr {
        let want = (parts as usize * per_round) as u64 * u64::from(rounds);
        if ctr.get() != want {
            return util::err(format!("counter is {}, expected {want}", ctr.get()));
        }
    }
    Ok((stats(&mut v, true), rss))
}

fn contention(run: &mut Run) -> Res<()> {
    let kinds = [
        LockKind::ShmLock,
        LockKind::Pthread,
        LockKind::PthreadRobust,
        LockKind::RawSync,
        LockKind::StdMutex,
    ];
    for (i, k) in kinds.into_iter().enumerate() {
        let (procs, threads, how) = if k.shared() {
            (2, 1, "2 processes")
        } else {
            (1, 2, "2 threads of one process")
        };
        let mut row = Row::new(G_LOCK2, k.label(), Unit::Ns).note(format!(
            "{how}; per increment; {} per participant per round",
            run.plan.contend_per_round
        ));
        if i == 0 {
            row = row.reference();
        }
        let plan = run.plan.clone();
        match contend_run(
            &plan,
            k,
            procs,
            threads,
            plan.contend_per_round,
            plan.contend_rounds,
        ) {
            Ok((s, rss)) => {
                row.median = Some(s.median);
                row.p99 = Some(s.p99);
                row.n = s.n;
                row.rss_kib = rss;
                run.push(row);
            }
            Err(e) => run.push(row.skip(format!("failed: {e}"))),
        }
    }
    Ok(())
}

fn counter(run: &mut Run) -> Res<()> {
    let kinds = [
        LockKind::ValueLock,
        LockKind::ValueFetchAdd,
        LockKind::ShmLock,
        LockKind::PthreadRobust,
    ];
    for (i, k) in kinds.into_iter().enumerate() {
        let label = match k {
            LockKind::ShmLock => "shmkit Lock + u64 in shared memory",
            LockKind::PthreadRobust => "robust pthread mutex + u64 in shared memory",
            _ => k.label(),
        };
        let mut row = Row::new(G_COUNTER, label, Unit::Ns).note(format!(
            "4 processes × {} increments; wall time ÷ increments",
            run.plan.counter_n
        ));
        if i == 0 {
            row = row.reference();
        }
        let plan = run.plan.clone();
        match contend_run(&plan, k, 4, 1, plan.counter_n, plan.counter_rounds) {
            Ok((s, rss)) => {
                row.median = Some(s.median);
                row.p99 = Some(s.p99);
                row.n = s.n;
                row.rss_kib = rss;
                run.push(row);
            }
            Err(e) => run.push(row.skip(format!("failed: {e}"))),
        }
    }
    Ok(())
}

fn segments(run: &mut Run) -> Res<()> {
    let n = run.plan.seg_n.to_string();
    let size = (1usize << 20).to_string();
    for (i, (k, label, note)) in [
        (
            "shmkit",
            "shmkit Segment",
            "create_unique + drop (writes and checks its header)",
        ),
        (
            "shared_memory",
            "shared_memory crate",
            "ShmemConf::create + drop; one byte written",
        ),
        (
            "libc",
            "bare libc",
            "shm_open + ftruncate + mmap + munmap + shm_unlink; one byte written",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let mut row = Row::new(G_SEG, label, Unit::Ns).note(note);
        if i == 0 {
            row = row.reference();
        }
        let out = one_shot(
            &run.plan,
            "segment",
            &[k.to_owned(), n.clone(), size.clone()],
        )?;
        stats_row(run, row, out)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Recovery after SIGKILL.

/// How long the survivor's thread must have been asleep in its blocking
/// call before the victim is killed (past any spinning).
const REC_SETTLE: Duration = Duration::from_millis(5);

fn recovery(run: &mut Run) -> Res<()> {
    let kinds = [
        RecKind::ShmLock,
        RecKind::ShmPipe,
        RecKind::ShmQueue,
        RecKind::PthreadRobust,
        RecKind::OsPipe,
        RecKind::SocketPair,
    ];
    let n = run.plan.rec_trials;
    for (i, k) in kinds.into_iter().enumerate() {
        let mut row = Row::new(G_RECOVER, k.label(), Unit::Ns).note(k.noticed());
        if matches!(k, RecKind::ShmLock | RecKind::ShmPipe | RecKind::ShmQueue) {
            row = row.note("default settings");
        }
        if i == 0 {
            row = row.reference();
        }
        let mut v = Vec::with_capacity(n);
        let mut failed = None;
        for _ in 0..n {
            match recover_trial(&run.plan, k) {
                Ok(ns) => v.push(ns),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        match failed {
            Some(e) => run.push(row.skip(format!("failed after {} trials: {e}", v.len()))),
            None => {
                roles::dump_samples(&format!("recover-{k:?}"), &v)?;
                let s = stats(&mut v, true);
                row.median = Some(s.median);
                row.p90 = Some(s.p90);
                row.p99 = Some(s.p99);
                row.n = s.n;
                run.push(row);
            }
        }
    }
    Ok(())
}

/// A pipe(2) or a socketpair for one trial: (the survivor's descriptor,
/// the victim's), both close-on-exec.
fn rec_fds(kind: RecKind) -> Res<(i32, i32)> {
    let mut fds = [-1i32; 2];
    // SAFETY: a valid out array of two ints.
    let r = unsafe {
        match kind {
            RecKind::OsPipe => libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC),
            _ => libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            ),
        }
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    // pipe2: [read end, write end]; the survivor reads.
    Ok((fds[0], fds[1]))
}

/// One trial: the survivor sets up, the victim takes its part, the
/// survivor blocks, and once it has slept for `REC_SETTLE` the victim is
/// killed. Returns ns from just before kill(2) to the survivor's notice.
fn recover_trial(plan: &Plan, kind: RecKind) -> Res<f64> {
    let name = util::unique("rec");
    let (ctl_name, ctl_shm) = new_ctl()?;
    let c = ctl(&ctl_shm);
    // What the harness creates and keeps until the trial ends (a Pipe is
    // created by the survivor: the victim holds the other end).
    let mut keep: Vec<Box<dyn std::any::Any>> = Vec::new();
    let (mut sfd, mut vfd) = (-1, -1);
    match kind {
        RecKind::ShmLock => keep.push(Box::new(shmkit::Lock::create(&name)?)),
        RecKind::ShmQueue => keep.push(Box::new(shmkit::Queue::create(&name, 1, 8)?)),
        RecKind::PthreadRobust => keep.push(Box::new(PthreadCtr::create(&name, true)?)),
        // The survivor creates it and unlinks it on a clean exit; this
        // removes it when the trial fails.
        RecKind::ShmPipe => keep.push(Box::new(Unlink(name.clone()))),
        RecKind::OsPipe | RecKind::SocketPair => (sfd, vfd) = rec_fds(kind)?,
    }
    let limit = plan.answer_limit();
    let mut os = plan.opts();
    os.fds = if sfd >= 0 { vec![sfd] } else { vec![] };
    let mut ov = plan.opts();
    ov.fds = if vfd >= 0 { vec![vfd] } else { vec![] };
    let spawned = (|| -> Res<(Kid, Kid)> {
        let mut s = spawn(
            "rec-survivor",
            &[kind.arg(), name.clone(), sfd.to_string(), ctl_name.clone()],
            &os,
        )?;
        expect_ready(&mut s, limit, &mut [])?;
        let v = spawn(
            "rec-victim",
            &[kind.arg(), name.clone(), vfd.to_string()],
            &ov,
        )?;
        Ok((s, v))
    })();
    // Only the survivor and the victim may hold the descriptors: an end
    // left open here would keep the EOF from coming.
    if sfd >= 0 {
        close(sfd);
        close(vfd);
    }
    let (mut s, mut v) = spawned?;
    expect_ready(&mut v, limit, &mut [&mut s])?;
    c.go.0.store(1, Ordering::Release);
    expect_ready(&mut s, limit, &mut [&mut v])?;
    // Asleep, and still asleep REC_SETTLE later.
    let deadline = Instant::now() + limit;
    let mut since: Option<Instant> = None;
    loop {
        if s.state() == Some('S') {
            let t = *since.get_or_insert_with(Instant::now);
            if t.elapsed() >= REC_SETTLE {
                break;
            }
        } else {
            since = None;
        }
        if Instant::now() > deadline {
            return util::err("the survivor never slept in its blocking call");
        }
        for k in [&mut s, &mut v] {
            if k.poll_exit().is_some() {
                return util::err(format!("{} ended before the kill", k.role));
            }
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let t0 = util::mono_ns();
    v.sigkill();
    let t1: u64 = match s.next(limit, &mut [])? {
        Said::Result(t) => t.parse()?,
        Said::Skip(why) => return util::err(why),
        Said::Ready(_) => return util::err("survivor said READY three times"),
    };
    s.finish(Duration::from_secs(30))?;
    v.kill();
    drop(keep);
    match t1.checked_sub(t0) {
        Some(d) => Ok(d as f64),
        None => util::err("the survivor returned before the kill"),
    }
}

/// Unlinks a segment name when dropped (if it still exists).
struct Unlink(String);

impl Drop for Unlink {
    fn drop(&mut self) {
        let _ = shmkit::unlink(&self.0);
    }
}

fn expect_ready(k: &mut Kid, limit: Duration, others: &mut [&mut Kid]) -> Res<()> {
    match k.next(limit, others)? {
        Said::Ready(_) => Ok(()),
        Said::Skip(why) => util::err(why),
        Said::Result(_) => util::err(format!("{} answered before it was ready", k.role)),
    }
}

// ---------------------------------------------------------------------------
// Python's multiprocessing.

#[derive(serde::Deserialize)]
struct PyOut {
    python: String,
    rows: Vec<PyRow>,
}

#[derive(serde::Deserialize)]
struct PyRow {
    metric: String,
    contender: String,
    median: Option<f64>,
    p99: Option<f64>,
    n: usize,
    note: String,
    #[serde(default)]
    skipped: Option<String>,
}

fn python(run: &mut Run, meta: &mut Meta) -> Res<()> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/mp_bench.py");
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(&script);
    if run.plan.quick {
        cmd.arg("--quick");
    }
    cmd.arg("--counter-n").arg(run.plan.counter_n.to_string());
    cmd.arg("--counter-rounds")
        .arg(run.plan.py_counter_rounds.to_string());
    cmd.stderr(std::process::Stdio::inherit());
    let skip_all = |run: &mut Run, why: String| {
        for (g, c, u) in python_rows() {
            run.push(Row::new(g, c, u).skip(why.clone()));
        }
    };
    let out = match cmd.output() {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            skip_all(run, format!("mp_bench.py failed ({})", o.status));
            return Ok(());
        }
        Err(e) => {
            skip_all(run, format!("python3 not found ({e})"));
            meta.python = "not found".into();
            return Ok(());
        }
    };
    let py: PyOut = serde_json::from_slice(&out.stdout)?;
    meta.python = py.python;
    for r in py.rows {
        let (group, unit, bytes) = match r.metric.as_str() {
            "rt8" => (G_RT8, Unit::Ns, Some(8)),
            "rt64" => (G_RT64, Unit::Ns, Some(64)),
            "tp64" => (G_TP64, Unit::PerSec, Some(64)),
            "tp4k" => (G_TP4K, Unit::PerSec, Some(4096)),
            "counter" => (G_COUNTER, Unit::Ns, None),
            other => return util::err(format!("mp_bench.py: unknown metric {other}")),
        };
        let mut row = Row::new(group, &r.contender, unit).note(r.note);
        row.median = r.median;
        row.p99 = r.p99;
        row.n = r.n;
        row.bytes = bytes;
        row.skipped = r.skipped;
        run.push(row);
    }
    Ok(())
}

fn python_rows() -> Vec<(&'static str, &'static str, Unit)> {
    vec![
        (G_RT8, "Python mp.Pipe", Unit::Ns),
        (G_RT8, "Python mp.Queue", Unit::Ns),
        (G_RT64, "Python mp.Pipe", Unit::Ns),
        (G_RT64, "Python mp.Queue", Unit::Ns),
        (G_TP64, "Python mp.Queue", Unit::PerSec),
        (G_TP4K, "Python mp.Queue", Unit::PerSec),
        (G_COUNTER, "Python mp.Value, with get_lock()", Unit::Ns),
    ]
}

// ---------------------------------------------------------------------------
// Memory.

fn shm_size(name: &str) -> Res<u64> {
    Ok(std::fs::metadata(format!("/dev/shm/{name}"))?.len())
}

fn memory_rows(run: &mut Run) -> Res<Vec<MemRow>> {
    let mut m = Vec::new();
    let mut add = |what: String, bytes: u64, note: &str| {
        m.push(MemRow {
            what,
            bytes,
            note: note.to_owned(),
        })
    };
    let lock = shmkit::Lock::create_unique()?;
    add(
        "shmkit Lock".into(),
        shm_size(lock.name())?,
        "header + lock; like every segment, it takes at least a page (4 KiB) when mapped",
    );
    let ev = shmkit::Event::create_unique()?;
    add(
        "shmkit Event".into(),
        shm_size(ev.name())?,
        "header + event",
    );
    let v = shmkit::Value::create_unique(0u64)?;
    add(
        "shmkit Value<u64>".into(),
        shm_size(v.name())?,
        "header + lock + value",
    );
    let a = shmkit::Array::create_unique(1024, 0u64)?;
    add(
        "shmkit Array<u64>, 1024 long".into(),
        shm_size(a.name())?,
        "header + lock + 8 KiB",
    );
    let p = shmkit::Pipe::create_unique()?;
    add(
        "shmkit Pipe, default".into(),
        shm_size(p.name())?,
        "two 64 KiB rings (duplex)",
    );
    let p = shmkit::Pipe::builder().capacity(4096).create_unique()?;
    add(
        "shmkit Pipe, 4 KiB rings".into(),
        shm_size(p.name())?,
        "two 4 KiB rings",
    );
    let mut q_sizes = Vec::new();
    for (c, msg) in [(16usize, 64usize), (1024, 64), (16, 4096), (4, 1 << 20)] {
        let q = shmkit::Queue::create_unique(c, msg)?;
        let b = shm_size(q.name())?;
        q_sizes.push((c, msg, b));
        add(
            format!("shmkit Queue, capacity {c} × {}", fmt_size(msg as u64)),
            b,
            "",
        );
    }
    // Per-slot cost from two capacities with the same message size.
    let (c1, _, b1) = q_sizes[0];
    let (c2, msg, b2) = q_sizes[1];
    let stride = (b2 - b1) / (c2 - c1) as u64;
    let fixed = b1 - stride * c1 as u64;
    add(
        "shmkit Queue of capacity C, max message M".into(),
        fixed,
        &format!(
            "≈ {fixed} + C × (M + {}) bytes (from capacity {c1} and {c2} at M = {msg})",
            stride - msg as u64
        ),
    );
    add(
        "pthread_mutex_t".into(),
        std::mem::size_of::<libc::pthread_mutex_t>() as u64,
        "placed by the caller; no header, no name",
    );
    {
        use raw_sync::events::EventInit;
        add(
            "raw_sync Event".into(),
            raw_sync::events::Event::size_of(None) as u64,
            "placed by the caller",
        );
    }
    let (fa, fb) = make_fds(Transport::OsPipe)?;
    // SAFETY: an open pipe descriptor.
    let pipe_sz = unsafe { libc::fcntl(fa[0], libc::F_GETPIPE_SZ) };
    for fd in fa.iter().chain(&fb) {
        close(*fd);
    }
    add(
        "pipe(2)".into(),
        pipe_sz.max(0) as u64,
        "kernel buffer per direction (F_GETPIPE_SZ)",
    );
    // The baseline: a child that does nothing.
    let mut k = spawn("idle", &[], &run.plan.opts())?;
    let idle = k.finish(Duration::from_secs(30))?;
    add(
        "peak RSS of an idle harness child".into(),
        idle * 1024,
        "the floor under every peak RSS below",
    );
    Ok(m)
}

// ---------------------------------------------------------------------------
// The machine.

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn loadavg() -> String {
    read("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(", ")
}

fn cmd_out(prog: &str, args: &[&str]) -> Option<String> {
    let o = std::process::Command::new(prog).args(args).output().ok()?;
    let mut s = String::from_utf8_lossy(&o.stdout).trim().to_owned();
    if s.is_empty() {
        s = String::from_utf8_lossy(&o.stderr).trim().to_owned();
    }
    (o.status.success() && !s.is_empty()).then_some(s)
}

fn gather_meta(cli: &Cli) -> Meta {
    let cpuinfo = read("/proc/cpuinfo");
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("unknown")
        .trim()
        .to_owned();
    let virtualized = cpuinfo
        .lines()
        .any(|l| l.starts_with("flags") && l.split_whitespace().any(|f| f == "hypervisor"));
    // SAFETY: utsname is plain data, written by uname before it is read.
    let kernel = unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        libc::uname(&mut u);
        let f = |b: &[libc::c_char]| {
            std::ffi::CStr::from_ptr(b.as_ptr())
                .to_string_lossy()
                .into_owned()
        };
        format!("{} {} {}", f(&u.sysname), f(&u.release), f(&u.machine))
    };
    let mem_total = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<f64>().ok())
        .map(|k| format!("{:.1} GiB", k / 1024.0 / 1024.0))
        .unwrap_or_default();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let root_s = root.display().to_string();
    let commit = cmd_out("git", &["-C", &root_s, "rev-parse", "--short", "HEAD"])
        .map(|c| {
            let dirty = cmd_out(
                "git",
                &[
                    "-C",
                    &root_s,
                    "status",
                    "--porcelain",
                    "--",
                    "src",
                    "Cargo.toml",
                ],
            )
            .is_some();
            if dirty {
                format!("{c} + uncommitted changes in src/")
            } else {
                c
            }
        })
        .unwrap_or_else(|| "unknown".into());
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let command = if std::env::var_os("SHMKIT_COMPARE_VIA_CARGO_BENCH").is_some() {
        let env = match std::env::var("SHMKIT_COMPARE_FEATURES") {
            Ok(f) => format!("SHMKIT_COMPARE_FEATURES={f} "),
            Err(_) => String::new(),
        };
        format!("{env}cargo bench --bench compare -- {}", args.join(" "))
    } else {
        format!("cd bench && cargo run --release -- {}", args.join(" "))
    };
    Meta {
        date_utc: utc_now(),
        mode: if cli.quick { "quick" } else { "full" }.into(),
        command: command.trim_end_matches(" -- ").trim().to_owned(),
        seconds: 0.0,
        cpu,
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        virtualized,
        kernel,
        mem_total,
        rustc: cmd_out("rustc", &["-V"]).unwrap_or_else(|| "unknown".into()),
        python: cmd_out("python3", &["-V"]).unwrap_or_else(|| "not found".into()),
        shmkit_commit: commit,
        load_before: loadavg(),
        load_after: String::new(),
        clock_ns: 0.0,
        iceoryx2_built: true,
        settings: vec![],
    }
}

fn utc_now() -> String {
    // SAFETY: `tm` is plain data written by gmtime_r before it is read.
    unsafe {
        let t = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        libc::gmtime_r(&t, &mut tm);
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02} UTC",
            tm.tm_year + 1900,
            tm.tm_mon + 1,
            tm.tm_mday,
            tm.tm_hour,
            tm.tm_min
        )
    }
}
