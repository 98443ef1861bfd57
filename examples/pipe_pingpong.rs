//! Round trips over a `Pipe`: the parent sends a message, a child process
//! sends it straight back, many times. Prints the median and 99th
//! percentile round-trip time.
//!
//! Mirrors the `Pipe` ping-pong of Python's multiprocessing tutorials:
//!
//! ```python
//! def echo(conn):
//!     try:
//!         while True:
//!             conn.send(conn.recv())
//!     except EOFError:                  # the parent closed its end
//!         pass
//!
//! parent, child = Pipe()
//! Process(target=echo, args=(child,)).start()
//! for i in range(N):
//!     t = time.perf_counter(); parent.send(i); parent.recv(); times.append(...)
//! parent.close()
//! ```
//!
//! The child stops when the parent's end is gone: `recv` reports
//! `Disconnected` after the last message, whether the parent dropped its end
//! or died. Run it with `cargo run --release --example pipe_pingpong`.

mod common;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use common::{Result, Role};
use shmkit::{Error, Pipe};

fn round_trips() -> usize {
    if common::quick() {
        10_000
    } else {
        100_000
    }
}

fn main() -> ExitCode {
    if let Some(role) = common::role() {
        return common::finish(echo(&role));
    }
    common::on_ctrl_c();
    common::finish(parent())
}

/// The child: sends back every message until the parent's end is gone.
fn echo(role: &Role) -> Result {
    let mut end = Pipe::open(role.arg(0)?)?;
    let mut n = 0u64;
    loop {
        match end.recv() {
            Ok(msg) => end.send(&msg)?,
            Err(Error::Disconnected { .. }) => break,
            Err(e) => return Err(e.into()),
        }
        n += 1;
    }
    println!("echo: the parent's end is gone after {n} messages; exiting");
    Ok(())
}

fn parent() -> Result {
    let n = round_trips();
    let warmup = n / 10;
    let mut end = Pipe::create(&common::name("pipe"))?;
    let child = common::spawn("echo", &[end.name()])?;

    let mut times = Vec::with_capacity(n);
    for i in 0..(warmup + n) as u64 {
        if i % 1024 == 0 {
            common::check()?;
        }
        let t = Instant::now();
        end.send_value(&i)?;
        let back: u64 = end.recv_value()?;
        let rtt = t.elapsed();
        if back != i {
            return Err(format!("sent {i}, got {back} back").into());
        }
        if i as usize >= warmup {
            times.push(rtt);
        }
    }
    drop(end); // the child sees Disconnected and exits
    child.join()?;

    times.sort_unstable();
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    let total: Duration = times.iter().sum();
    println!(
        "{n} round trips of an 8-byte message between two processes (after {warmup} to warm up):"
    );
    println!("  median {}", common::human(at(0.5)));
    println!("  p99    {}", common::human(at(0.99)));
    println!("  mean   {}", common::human(total / n as u32));
    println!("  max    {}", common::human(times[times.len() - 1]));
    Ok(())
}
