#!/usr/bin/env python3
"""Python's multiprocessing, measured the way bench/src measures shmkit.

Run by the comparison harness (bench/src/main.rs), which merges the rows
it prints (JSON on stdout) into its report. Standard library only.

    python3 bench/python/mp_bench.py [--quick] [--counter-n N] [--counter-rounds R]

Rows:
  rt8, rt64   round trip of an 8 / 64-byte bytes object through two
              mp.Queue or over one mp.Pipe (send_bytes / recv_bytes),
              per-round-trip timing with perf_counter_ns, after a warm-up;
  tp64, tp4k  one producer process putting bytes objects into an mp.Queue
              as fast as it can, the consumer timing batches;
  counter     4 processes each doing N times
              `with v.get_lock(): v.value += 1` on an mp.Value('q');
              wall time / (4 N) per increment.
"""

import argparse
import json
import multiprocessing as mp
import platform
import statistics
import sys
import time


def summary(samples, high_is_tail=True):
    v = sorted(samples)
    n = len(v)

    def q(p):
        return v[min(n - 1, round((n - 1) * p))]

    return {
        "median": q(0.5),
        "p99": q(0.99) if high_is_tail else q(0.01),
        "n": n,
    }


# ---------------------------------------------------------------------------
# Round trips.


def queue_echo(inq, outq, total):
    for _ in range(total):
        outq.put(inq.get())


def pipe_echo(conn, total):
    for _ in range(total):
        conn.send_bytes(conn.recv_bytes())


def rt_queue(size, n, warm):
    a, b = mp.Queue(), mp.Queue()
    p = mp.Process(target=queue_echo, args=(a, b, n + warm))
    p.start()
    msg = b"\xa5" * size
    out = []
    clock = time.perf_counter_ns
    for i in range(n + warm):
        t0 = clock()
        a.put(msg)
        r = b.get()
        dt = clock() - t0
        if i >= warm:
            out.append(dt)
    assert r == msg
    p.join()
    return summary(out)


def rt_pipe(size, n, warm):
    here, there = mp.Pipe()
    p = mp.Process(target=pipe_echo, args=(there, n + warm))
    p.start()
    msg = b"\xa5" * size
    out = []
    clock = time.perf_counter_ns
    for i in range(n + warm):
        t0 = clock()
        here.send_bytes(msg)
        r = here.recv_bytes()
        dt = clock() - t0
        if i >= warm:
            out.append(dt)
    assert r == msg
    p.join()
    return summary(out)


# ---------------------------------------------------------------------------
# Throughput.


def producer(q, size, count):
    msg = b"\x5a" * size
    for _ in range(count):
        q.put(msg)
    q.put(None)


def tp_queue(size, seconds, warm_seconds, batch):
    # The producer puts a fixed count, sized from a short trial so that the
    # run takes about `warm_seconds + seconds`.
    q = mp.Queue(maxsize=1024)
    trial = 20 * batch
    p = mp.Process(target=producer, args=(q, size, trial))
    p.start()
    t0 = time.perf_counter()
    while q.get() is not None:
        pass
    rate = trial / (time.perf_counter() - t0)
    p.join()
    count = max(10 * batch, int(rate * (seconds + warm_seconds)))

    q = mp.Queue(maxsize=1024)
    p = mp.Process(target=producer, args=(q, size, count))
    p.start()
    clock = time.perf_counter
    start = clock()
    last = None
    rates = []
    got = 0
    done = False
    while not done:
        for _ in range(batch):
            if q.get() is None:
                done = True
                break
            got += 1
        if done:
            break
        now = clock()
        if now - start >= warm_seconds:
            if last is not None:
                rates.append(batch / (now - last))
            last = now
    p.join()
    if len(rates) < 3:
        return None
    return summary(rates, high_is_tail=False)


# ---------------------------------------------------------------------------
# The locked counter.


def incr(v, n, ready, go):
    ready.release()
    go.wait()
    for _ in range(n):
        with v.get_lock():
            v.value += 1


def counter(n, rounds, procs=4):
    out = []
    for _ in range(rounds):
        v = mp.Value("q", 0)
        ready = mp.Semaphore(0)
        go = mp.Event()
        ps = [mp.Process(target=incr, args=(v, n, ready, go)) for _ in range(procs)]
        for p in ps:
            p.start()
        for _ in ps:
            ready.acquire()
        t0 = time.perf_counter_ns()
        go.set()
        for p in ps:
            p.join()
        dt = time.perf_counter_ns() - t0
        assert v.value == procs * n, (v.value, procs * n)
        out.append(dt / (procs * n))
    return summary(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--counter-n", type=int, default=100_000)
    ap.add_argument("--counter-rounds", type=int, default=None)
    args = ap.parse_args()
    if args.quick:
        n, warm, secs, warm_secs, rounds = 200, 50, 0.1, 0.03, 1
    else:
        n, warm, secs, warm_secs, rounds = 10_000, 1_000, 2.0, 0.5, 5
    if args.counter_rounds is not None:
        rounds = args.counter_rounds
    method = mp.get_start_method()
    rows = []

    def row(metric, contender, s, note):
        r = {"metric": metric, "contender": contender, "note": note,
             "median": None, "p99": None, "n": 0}
        if s is None:
            r["skipped"] = "too few samples"
        else:
            r.update(s)
        rows.append(r)
        print(f"python: {metric} {contender}: {s}", file=sys.stderr)

    for size, metric in [(8, "rt8"), (64, "rt64")]:
        row(metric, "Python mp.Pipe", rt_pipe(size, n, warm),
            f"Connection.send_bytes / recv_bytes; start method {method}")
        row(metric, "Python mp.Queue", rt_queue(size, n, warm),
            f"two Queues, put / get of bytes; start method {method}")
    for size, metric, batch in [(64, "tp64", 1000), (4096, "tp4k", 500)]:
        row(metric, "Python mp.Queue", tp_queue(size, secs, warm_secs, batch),
            f"maxsize 1024; batches of {batch}")
    row("counter", "Python mp.Value, with get_lock()", counter(args.counter_n, rounds),
        f"4 processes × {args.counter_n} of `with v.get_lock(): v.value += 1`; "
        f"wall time ÷ increments; {rounds} round(s)")
    json.dump({"python": f"Python {platform.python_version()}", "rows": rows}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
