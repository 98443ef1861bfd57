//! Pipe torture at scale: a writer or a reader process SIGKILLed mid-stream,
//! including while a streamed message larger than the ring is half through.
//!
//! The survivor (this test process, at the creating or the opening end) must
//! see every message whole and in order, every send acknowledged before the
//! kill must arrive, and it must get `Disconnected` (never a hang, never a
//! torn message) in bounded time. When the reader is killed, the surviving
//! writer's sends fail with `Disconnected` once the ring is full.
//!
//! `SHMKIT_TORTURE_TRIALS` (small by default), `SHMKIT_TORTURE_SEED`,
//! `SHMKIT_TORTURE_TRIAL`: as in tests/torture_queue.rs.

mod common;

use std::time::{Duration, Instant};

use common::{
    count_from_env, dispatch, seed_from_env, spawn, unique_name, wait_for, watchdog, Cleanup, Proc,
    Rng, Words,
};
use shmkit::{Error, Pipe, PipeEnd};

#[test]
fn child() {
    dispatch(&[("pipe_peer", pipe_peer)]);
}

/// How long any one call of the survivor may take before the trial fails as
/// hung (the bound on "Disconnected in bounded time"; generous, so that a
/// loaded machine does not fail it).
const HANG: Duration = Duration::from_secs(20);

/// Words: messages acknowledged by the writer, messages received whole by
/// the reader, inside a streamed (larger than the ring) send, error code,
/// pipe created (by a creating child), peer started.
const W_ACKED: usize = 0;
const W_RECEIVED: usize = 1;
const W_STREAMING: usize = 2;
const W_ERR: usize = 3;
const W_CREATED: usize = 4;
const W_STARTED: usize = 5;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Fills `buf` with message `i` of length `len` (at least 8).
fn fill(buf: &mut Vec<u8>, i: u32, len: usize) {
    buf.clear();
    buf.extend_from_slice(&i.to_le_bytes());
    buf.extend_from_slice(&(len as u32).to_le_bytes());
    let mut r = Rng::new(u64::from(i), 3);
    let x = r.next();
    buf.extend((8..len).map(|k| (x >> (k % 8 * 8)) as u8 ^ (k >> 3) as u8));
}

/// Checks that `m` is message `want` and whole.
fn check(m: &[u8], want: u32) -> Result<(), String> {
    if m.len() < 8 {
        return Err(format!(
            "message {want}: torn, {} bytes: {:?}",
            m.len(),
            &m[..m.len().min(16)]
        ));
    }
    let i = u32::from_le_bytes(m[..4].try_into().unwrap());
    let len = u32::from_le_bytes(m[4..8].try_into().unwrap()) as usize;
    if i != want {
        return Err(format!(
            "expected message {want}, got message {i} (out of order, lost or repeated)"
        ));
    }
    if len != m.len() {
        return Err(format!("message {i}: torn, {} bytes of {len}", m.len()));
    }
    let mut b = Vec::new();
    fill(&mut b, i, len);
    if b != m {
        let at = b.iter().zip(m).position(|(a, b)| a != b).unwrap_or(0);
        return Err(format!("message {i} ({len} bytes): wrong byte at {at}"));
    }
    Ok(())
}

fn choose_len(rng: &mut Rng, cap: usize, max: usize) -> usize {
    match rng.below(3) {
        0 => 8 + rng.below((cap / 4 - 7) as u64) as usize,
        1 => 8 + rng.below((cap - 7) as u64) as usize,
        _ => cap + 1 + rng.below((max - cap) as u64) as usize,
    }
}

/// Sends message `i`, in a random form; records it in `w` once acknowledged.
fn send_one(
    end: &mut PipeEnd,
    w: &Words,
    rng: &mut Rng,
    i: u32,
    cap: usize,
    max: usize,
    buf: &mut Vec<u8>,
) -> Result<(), Error> {
    let len = choose_len(rng, cap, max);
    fill(buf, i, len);
    w.set(W_STREAMING, u64::from(len > cap));
    let r = match rng.below(4) {
        0 => loop {
            match end.send_timeout(buf, ms(1 + rng.below(3))) {
                Err(Error::Timeout { .. }) => {}
                r => break r,
            }
        },
        1 if len <= cap / 2 => end.reserve(len).map(|mut g| {
            g.copy_from_slice(buf);
            g.commit();
        }),
        _ => end.send(buf),
    };
    w.set(W_STREAMING, 0);
    if r.is_ok() {
        w.set(W_ACKED, u64::from(i) + 1);
    }
    r
}

/// Receives message `want`, in a random form, waiting up to `limit` in all.
/// `Ok(None)` on `Disconnected`.
fn recv_one(
    end: &mut PipeEnd,
    rng: &mut Rng,
    want: u32,
    max: usize,
    limit: Duration,
    small_buffers: bool,
) -> Result<Option<usize>, String> {
    let deadline = Instant::now() + limit;
    let left = || deadline.saturating_duration_since(Instant::now());
    let mode = match rng.below(6) {
        2 if !small_buffers => 5,
        m => m,
    };
    let r: Result<Vec<u8>, Error> = match mode {
        0 => loop {
            match end.recv_timeout(ms(1 + rng.below(3))) {
                Err(Error::Timeout { .. }) if !left().is_zero() => {}
                r => break r,
            }
        },
        1 => {
            let mut buf = vec![0u8; max];
            end.recv_into_timeout(&mut buf, left()).map(|n| {
                buf.truncate(n);
                buf
            })
        }
        2 => {
            // Too small first: the message stays queued and says its length.
            let mut small = [0u8; 4];
            match end.recv_into_timeout(&mut small, left()) {
                Err(Error::BufferTooSmall { needed, .. }) => {
                    let mut buf = vec![0u8; needed];
                    end.recv_into_timeout(&mut buf, left()).map(|n| {
                        buf.truncate(n);
                        buf
                    })
                }
                Ok(n) => Err(Error::InvalidArgument(format!(
                    "recv_into a 4-byte buffer returned {n} for message {want}"
                ))),
                Err(e) => Err(e),
            }
        }
        3 => match end.poll(left()) {
            Ok(true) => end.recv_timeout(left()),
            Ok(false) => Err(Error::Timeout {
                origin: shmkit::Origin::UNKNOWN,
            }),
            Err(e) => Err(e),
        },
        4 => {
            // recv_ref has no timed form: wait for a message first.
            match end.poll(left()) {
                Ok(true) => end.recv_ref().map(|r| r.to_vec()),
                Ok(false) => Err(Error::Timeout {
                    origin: shmkit::Origin::UNKNOWN,
                }),
                Err(e) => Err(e),
            }
        }
        _ => end.recv_timeout(left()),
    };
    match r {
        Ok(m) => check(&m, want).map(|()| Some(m.len())),
        Err(Error::Disconnected { .. }) => Ok(None),
        Err(Error::Timeout { .. }) => Err(format!(
            "hang: no message {want} and no Disconnected within {limit:?}"
        )),
        Err(e) => Err(format!("recv of message {want}: {e}")),
    }
}

/// A child at one end: `writer` sends until killed; `reader` receives and
/// checks until killed. Args: name, words, role, "1" to create the pipe,
/// ring capacity, max message, seed.
fn pipe_peer(args: &[String]) {
    let w = Words::open(&args[1]);
    let writer = args[2] == "writer";
    let cap: usize = args[4].parse().unwrap();
    let max: usize = args[5].parse().unwrap();
    let mut rng = Rng::new(args[6].parse().unwrap(), 11);
    let small = args[7] == "1";
    let mut end = if args[3] == "1" {
        let e = Pipe::builder()
            .capacity(cap)
            .max_message(max)
            .create(&args[0])
            .unwrap();
        w.set(W_CREATED, 1);
        e
    } else {
        Pipe::open(&args[0]).unwrap()
    };
    w.set(W_STARTED, 1);
    let mut buf = Vec::new();
    for i in 0u32.. {
        if writer {
            if let Err(e) = send_one(&mut end, &w, &mut rng, i, cap, max, &mut buf) {
                w.set(W_ERR, 2);
                panic!("writer: send {i}: {e}");
            }
        } else {
            match recv_one(
                &mut end,
                &mut rng,
                i,
                max,
                Duration::from_secs(3_600),
                small,
            ) {
                Ok(Some(_)) => w.set(W_RECEIVED, u64::from(i) + 1),
                Ok(None) => {
                    w.set(W_ERR, 3);
                    panic!("reader: Disconnected while the writer lives");
                }
                Err(e) => {
                    w.set(W_ERR, 1);
                    panic!("reader: {e}");
                }
            }
        }
    }
}

#[derive(Default, Debug)]
struct PStats {
    trials: u64,
    kills: u64,
    kills_writer: u64,
    kills_writer_mid_streamed_message: u64,
    kills_reader: u64,
    messages_checked: u64,
    streamed_messages: u64,
    disconnected_seen: u64,
}

/// One trial; `small` adds receives into too small buffers first.
fn pipe_trial(seed: u64, trial: u64, small: bool, st: &mut PStats) -> Result<(), String> {
    let mut rng = Rng::new(seed, trial);
    let cap = 64usize << rng.below(6); // 64 ..= 2048
    let max = cap * (2 + rng.below(4) as usize);
    let child_writes = rng.one_in(2);
    let child_creates = rng.one_in(2);
    // Kill the writer while a streamed message is half through the ring?
    let target_stream = child_writes && rng.one_in(2);
    let run_for = Duration::from_micros(rng.below(5_000));
    let params = format!(
        "ring {cap}, max {max}, child {} and {}, kill {}",
        if child_writes { "writes" } else { "reads" },
        if child_creates { "creates" } else { "opens" },
        if target_stream {
            "mid-stream".to_string()
        } else {
            format!("after {run_for:?}")
        }
    );
    let err = |what: String| format!("{params}: {what}");
    let name = unique_name("tpipe");
    let _clean = Cleanup(vec![name.clone()]);
    let w = Words::create(8);
    let role = if child_writes { "writer" } else { "reader" };
    let peer_args = |create: bool| {
        vec![
            name.clone(),
            w.name().to_owned(),
            role.to_owned(),
            if create { "1" } else { "0" }.to_owned(),
            cap.to_string(),
            max.to_string(),
            rng.clone().next().to_string(),
            if small { "1" } else { "0" }.to_owned(),
        ]
    };
    let (mut end, child): (PipeEnd, Proc) = if child_creates {
        let a = peer_args(true);
        let a: Vec<&str> = a.iter().map(|s| s.as_str()).collect();
        let p = spawn("pipe_peer", &a);
        if !wait_for(HANG, || w.get(W_CREATED) == 1) {
            return Err(err("the child never created the pipe".into()));
        }
        (Pipe::open(&name).map_err(|e| err(format!("open: {e}")))?, p)
    } else {
        let e = Pipe::builder()
            .capacity(cap)
            .max_message(max)
            .create(&name)
            .unwrap();
        let a = peer_args(false);
        let a: Vec<&str> = a.iter().map(|s| s.as_str()).collect();
        (e, spawn("pipe_peer", &a))
    };
    if !wait_for(HANG, || w.get(W_STARTED) == 1) {
        return Err(err("the child never started".into()));
    }
    let _ = rng.next();
    let mut my = Rng::new(seed, 1_000_000 + trial);
    let mut n = 0u32; // messages received or sent by this end
    let mut buf = Vec::new();
    if child_writes {
        // Read while it writes, then kill it.
        let t0 = Instant::now();
        if target_stream {
            // Stop reading once a streamed message has begun; the writer
            // fills the ring and blocks mid-message.
            while w.get(W_STREAMING) == 0 {
                match recv_one(&mut end, &mut my, n, max, HANG, small).map_err(&err)? {
                    Some(len) => {
                        n += 1;
                        st.streamed_messages += u64::from(len > cap);
                    }
                    None => return Err(err("Disconnected while the writer lives".into())),
                }
                st.messages_checked += 1;
            }
            std::thread::sleep(Duration::from_micros(my.below(2_000)));
        } else {
            while t0.elapsed() < run_for || n == 0 {
                match recv_one(&mut end, &mut my, n, max, HANG, small).map_err(&err)? {
                    Some(len) => {
                        n += 1;
                        st.streamed_messages += u64::from(len > cap);
                    }
                    None => return Err(err("Disconnected while the writer lives".into())),
                }
                st.messages_checked += 1;
            }
        }
        let streaming = w.get(W_STREAMING) == 1;
        child.kill();
        st.kills += 1;
        st.kills_writer += 1;
        if streaming {
            st.kills_writer_mid_streamed_message += 1;
        }
        let acked = w.get(W_ACKED) as u32;
        if w.get(W_ERR) != 0 {
            return Err(err(format!("the writer failed: code {}", w.get(W_ERR))));
        }
        // Drain: every acknowledged message, perhaps the one in flight if
        // it was complete, then Disconnected; nothing torn.
        while let Some(len) = recv_one(&mut end, &mut my, n, max, HANG, small).map_err(|e| {
            err(format!(
                "after the kill ({acked} acknowledged, {n} received): {e}"
            ))
        })? {
            n += 1;
            st.streamed_messages += u64::from(len > cap);
            st.messages_checked += 1;
            if n > acked + 1 {
                return Err(err(format!("received {n} messages, only {acked} sent")));
            }
        }
        st.disconnected_seen += 1;
        if n < acked {
            return Err(err(format!(
                "Disconnected after {n} messages; {acked} were acknowledged"
            )));
        }
        // And it stays disconnected.
        match end.recv_timeout(ms(1)) {
            Err(Error::Disconnected { .. }) => {}
            other => return Err(err(format!("recv after Disconnected: {other:?}"))),
        }
    } else {
        // Write while it reads, then kill it; keep writing until Disconnected.
        let t0 = Instant::now();
        while t0.elapsed() < run_for || w.get(W_RECEIVED) == 0 {
            let t = Instant::now();
            send_one(&mut end, &w, &mut my, n, cap, max, &mut buf)
                .map_err(|e| err(format!("send {n} while the reader lives: {e}")))?;
            if t.elapsed() > HANG {
                return Err(err(format!("send {n} took {:?}", t.elapsed())));
            }
            n += 1;
        }
        child.kill();
        st.kills += 1;
        st.kills_reader += 1;
        let received = w.get(W_RECEIVED);
        if w.get(W_ERR) != 0 {
            return Err(err(format!(
                "the reader saw a bad message or error: code {} after {received} messages",
                w.get(W_ERR)
            )));
        }
        st.messages_checked += received;
        let after = n;
        loop {
            let len = choose_len(&mut my, cap, max);
            fill(&mut buf, n, len);
            match end.send_timeout(&buf, HANG) {
                Ok(()) => n += 1,
                Err(Error::Disconnected { .. }) => break,
                Err(Error::Timeout { .. }) => {
                    return Err(err(format!(
                        "hang: send {n} neither sent nor Disconnected within {HANG:?}"
                    )))
                }
                Err(e) => return Err(err(format!("send {n} after the kill: {e}"))),
            }
            // At most a ring's worth of small messages fits after the kill.
            if n - after > cap as u32 + 2 {
                return Err(err(format!(
                    "{} sends succeeded after the reader was killed",
                    n - after
                )));
            }
        }
        st.disconnected_seen += 1;
        match end.send(b"12345678") {
            Err(Error::Disconnected { .. }) => {}
            other => return Err(err(format!("send after Disconnected: {other:?}"))),
        }
    }
    st.trials += 1;
    Ok(())
}

/// Every receive form, including a too small buffer first (issue 14
/// defect 2: `recv_into` panics when a message arrives between its peeks).
#[test]
fn pipe_sigkill_torture() {
    pipe_torture("pipe_sigkill_torture", true);
}

/// The same without too small buffers.
#[test]
fn pipe_sigkill_torture_whole_buffers() {
    pipe_torture("pipe_sigkill_torture_whole_buffers", false);
}

fn pipe_torture(test: &str, small: bool) {
    let _w = watchdog(Duration::from_secs(3_600 * 4));
    let trials = count_from_env("SHMKIT_TORTURE_TRIALS", 40);
    let seed = seed_from_env("SHMKIT_TORTURE_SEED", test);
    let only = std::env::var("SHMKIT_TORTURE_TRIAL")
        .ok()
        .map(|s| s.parse::<u64>().unwrap());
    let t0 = Instant::now();
    let mut st = PStats::default();
    let mut failures = Vec::new();
    for trial in 0..trials {
        if only.is_some_and(|t| t != trial) {
            continue;
        }
        if let Err(e) = pipe_trial(seed, trial, small, &mut st) {
            let line = format!(
                "{test}: FAILED trial {trial} (SHMKIT_TORTURE_SEED={seed} SHMKIT_TORTURE_TRIAL={trial}): {e}"
            );
            eprintln!("{line}");
            failures.push(line);
            if failures.len() >= 3 {
                break;
            }
        }
    }
    eprintln!(
        "{test} summary: seed {seed}, {} trials passed, {} failed, {:.1} s; {st:?}",
        st.trials,
        failures.len(),
        t0.elapsed().as_secs_f64()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
