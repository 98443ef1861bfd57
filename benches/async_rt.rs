//! `cargo bench --bench async_rt [-- ROUNDS]`: a 64 B round trip over a
//! Pipe to an echo thread, awaited with `recv_async` on a current-thread
//! tokio runtime, against the blocking `recv`, and against a tokio
//! `UnixStream` pair (the same echo shape). Prints the median of 5 runs of
//! ROUNDS round trips each, in µs per round trip, and the ratios.
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use shmkit::Pipe;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let rounds: u32 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let msg = [7u8; 64];

    // The echo side is a plain thread with a blocking end, for both pipe
    // variants: only the waiting side differs.
    let mut a = Pipe::create_unique().unwrap();
    let mut b = Pipe::open(a.name()).unwrap();
    let echo = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while let Ok(n) = b.recv_into(&mut buf) {
            if n == 0 || b.send(&buf[..n]).is_err() {
                return;
            }
        }
    });
    let mut blocking = Vec::new();
    let mut asynch = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..rounds {
            a.send(&msg).unwrap();
            a.recv().unwrap();
        }
        blocking.push(t.elapsed() / rounds);
        let t = Instant::now();
        rt.block_on(async {
            for _ in 0..rounds {
                a.send_async(&msg).await.unwrap();
                a.recv_async().await.unwrap();
            }
        });
        asynch.push(t.elapsed() / rounds);
    }
    a.send(&[]).unwrap();
    drop(a);
    echo.join().unwrap();

    let mut unix = Vec::new();
    rt.block_on(async {
        let (mut x, y) = tokio::net::UnixStream::pair().unwrap();
        let mut y = y.into_std().unwrap();
        y.set_nonblocking(false).unwrap();
        let echo = std::thread::spawn(move || {
            use std::io::{Read, Write};
            let mut buf = [0u8; 64];
            while y.read_exact(&mut buf).is_ok() {
                if y.write_all(&buf).is_err() {
                    return;
                }
            }
        });
        let mut buf = [0u8; 64];
        for _ in 0..5 {
            let t = Instant::now();
            for _ in 0..rounds {
                x.write_all(&msg).await.unwrap();
                x.read_exact(&mut buf).await.unwrap();
            }
            unix.push(t.elapsed() / rounds);
        }
        drop(x);
        echo.join().unwrap();
    });
    let (b, a, u) = (median(blocking), median(asynch), median(unix));
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!("64 B round trip, median of 5 × {rounds}:");
    println!("  Pipe, blocking recv         {:>8.2} µs", us(b));
    println!(
        "  Pipe, recv_async (tokio)    {:>8.2} µs  ({:.2}× blocking)",
        us(a),
        us(a) / us(b)
    );
    println!(
        "  tokio UnixStream            {:>8.2} µs  ({:.2}× Pipe async)",
        us(u),
        us(u) / us(a)
    );
}
