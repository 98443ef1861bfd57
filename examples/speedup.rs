//! A CPU-heavy task — the sum of 0..10^7, four times — run one after the
//! other, on four threads, and in four processes that write their sums into
//! a shared `Array`. Prints the times as a table and draws them as a bar
//! chart, `speedup.svg` (or the path given as the first argument).
//!
//! Mirrors the "processes vs threads" benchmark of Python's multiprocessing
//! tutorials, where threads gain nothing (the GIL) and processes scale:
//!
//! ```python
//! def task(n):
//!     return sum(range(n))
//!
//! [task(10**7) for _ in range(4)]                                 # sequential
//! with ThreadPoolExecutor(4) as ex: list(ex.map(task, [10**7]*4))  # threads
//! with Pool(4) as pool: pool.map(task, [10**7] * 4)               # processes
//! plt.bar(["sequential", "threads", "processes"], times); plt.savefig(...)
//! ```
//!
//! In Rust, threads scale too: processes are for isolation (a crash, a
//! different binary, another language), and shared memory makes them about
//! as cheap as threads once started. As with a `Pool`, the processes are
//! started before the clock starts (an `Event` starts them all at once; two
//! `Value`s count who is ready and who is done); the start-up time is
//! printed apart. With C CPUs both reach about min(C, 4)×. Run it with
//! `cargo run --release --example speedup [-- path/to/chart.svg]`.

mod common;

use std::hint::black_box;
use std::process::ExitCode;
use std::time::Duration;

use common::{Result, Role};
use plotters::prelude::*;
use shmkit::{Array, Event, Value};

const TASKS: usize = 4;

/// The task's size: 10^7, or 10^6 under `SHMKIT_EXAMPLE_QUICK=1`.
fn size() -> u64 {
    if common::quick() {
        1_000_000
    } else {
        10_000_000
    }
}

/// The task: sum 0..n the slow way (`black_box` keeps the compiler from
/// using the closed form n(n-1)/2).
fn task(n: u64) -> u64 {
    let mut sum = 0u64;
    for i in 0..n {
        sum = sum.wrapping_add(black_box(i));
    }
    sum
}

fn main() -> ExitCode {
    if let Some(role) = common::role() {
        return common::finish(worker(&role));
    }
    common::on_ctrl_c();
    common::finish(parent())
}

/// A process of the pool: says it is ready, waits for the start signal,
/// runs the task, writes its sum at its index and says it is done.
fn worker(role: &Role) -> Result {
    let sums = Array::<u64>::open(role.arg(0)?)?;
    let go = Event::open(role.arg(1)?)?;
    let ready = Value::<u64>::open(role.arg(2)?)?;
    let done = Value::<u64>::open(role.arg(3)?)?;
    let n: u64 = role.num(4)?;
    let i: usize = role.num(5)?;
    ready.fetch_add(1);
    go.wait()?;
    sums.set(i, task(n))?;
    done.fetch_add(1);
    Ok(())
}

fn parent() -> Result {
    let svg = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "speedup.svg".into());
    let n = size();
    let expected = n * (n - 1) / 2;
    let check = |sums: &[u64]| -> Result {
        if sums.iter().all(|&s| s == expected) {
            Ok(())
        } else {
            Err(format!("wrong sums {sums:?}, expected {expected} each").into())
        }
    };
    println!(
        "{TASKS} × sum(0..{n}) on {} CPUs (best of {ROUNDS} runs):",
        common::cpus()
    );

    let sequential = best_of(|| {
        let mut sums = Vec::new();
        for _ in 0..TASKS {
            common::check()?;
            sums.push(task(n));
        }
        check(&sums)
    })?;

    let threads = best_of(|| {
        let sums = std::thread::scope(|s| {
            let handles: Vec<_> = (0..TASKS).map(|_| s.spawn(|| task(n))).collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("task thread panicked"))
                .collect::<Vec<_>>()
        });
        check(&sums)
    })?;

    // The processes are started first, like a Pool, and timed from the
    // start signal until the last one is done.
    let shared = Array::<u64>::create(&common::name("sums"), TASKS, 0)?;
    let go = Event::create(&common::name("go"))?;
    let ready = Value::<u64>::create(&common::name("ready"), 0)?;
    let done = Value::<u64>::create(&common::name("done"), 0)?;
    let mut startup = Duration::MAX;
    let mut processes = Duration::MAX;
    for _ in 0..ROUNDS {
        go.clear();
        ready.store(0);
        done.store(0);
        shared.lock()?.fill(0);
        let (workers, started) = common::timed(|| {
            let n = n.to_string();
            let names = [shared.name(), go.name(), ready.name(), done.name(), &n];
            let workers = common::spawn_n(TASKS, "task", &names)?;
            common::until(|| ready.load() == TASKS as u64)?;
            Ok(workers)
        })?;
        let ((), took) = common::timed(|| {
            go.set();
            common::until(|| done.load() == TASKS as u64)
        })?;
        common::join_all(workers)?;
        check(&shared.to_vec())?;
        startup = startup.min(started);
        processes = processes.min(took);
    }

    let rows = [
        ("sequential", sequential),
        ("threads", threads),
        ("processes", processes),
    ];
    println!("  {:<12} {:>10} {:>8}", "how", "time", "speedup");
    for (how, t) in rows {
        println!(
            "  {how:<12} {:>10} {:>7.2}×",
            common::human(t),
            sequential.as_secs_f64() / t.as_secs_f64()
        );
    }
    println!(
        "  (starting the {TASKS} processes, before the clock started, took {})",
        common::human(startup)
    );
    draw(&svg, n, &rows)?;
    println!("chart: {svg}");
    Ok(())
}

/// How many times each way runs; the best time counts.
const ROUNDS: usize = 3;

/// Runs `f` [`ROUNDS`] times and returns the shortest time.
fn best_of(mut f: impl FnMut() -> Result) -> Result<Duration> {
    let mut best = Duration::MAX;
    for _ in 0..ROUNDS {
        let ((), t) = common::timed(&mut f)?;
        best = best.min(t);
    }
    Ok(best)
}

/// matplotlib's default blue.
const BLUE: RGBColor = RGBColor(0x1f, 0x77, 0xb4);

/// A bar chart of the times, one bar per way, in seconds.
fn draw(path: &str, n: u64, rows: &[(&str, Duration)]) -> Result {
    let secs: Vec<f64> = rows.iter().map(|(_, t)| t.as_secs_f64()).collect();
    let top = secs.iter().copied().fold(0.0, f64::max) * 1.15;
    let root = SVGBackend::new(path, (640, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{TASKS} × sum(0..{n}): sequential, threads, processes"),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d((0..rows.len() - 1).into_segmented(), 0.0..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_desc("seconds")
        .x_label_formatter(&|x| match x {
            SegmentValue::CenterOf(i) => rows.get(*i).map_or("", |r| r.0).to_string(),
            _ => String::new(),
        })
        .draw()?;
    chart.draw_series(
        Histogram::vertical(&chart)
            .style(BLUE.filled())
            .margin(30)
            .data(secs.iter().enumerate().map(|(i, &s)| (i, s))),
    )?;
    root.present()?;
    Ok(())
}
