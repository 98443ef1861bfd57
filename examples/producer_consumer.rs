//! A producer process puts 0, 1, 2, 3, 4 and then a sentinel on a `Queue`; a
//! consumer process takes and prints each message and stops at the sentinel.
//! The parent only creates the queue, starts both and waits.
//!
//! Mirrors the producer/consumer of Python's multiprocessing tutorials:
//!
//! ```python
//! def producer(q):
//!     for i in range(5):
//!         q.put(i)
//!     q.put(None)                       # the sentinel
//!
//! def consumer(q):
//!     while (item := q.get()) is not None:
//!         print("consumed", item)
//!
//! q = Queue()
//! Process(target=producer, args=(q,)).start()
//! Process(target=consumer, args=(q,)).start()
//! ```
//!
//! Queue messages are bytes: a number is its 8 bytes, and the sentinel is the
//! empty message (`None`). Run it with
//! `cargo run --release --example producer_consumer`.

mod common;

use std::process::ExitCode;
use std::time::Duration;

use common::{Result, Role};
use shmkit::Queue;

fn main() -> ExitCode {
    if let Some(role) = common::role() {
        let r = match role.name() {
            "producer" => producer(&role),
            "consumer" => consumer(&role),
            other => Err(format!("unknown role {other}").into()),
        };
        return common::finish(r);
    }
    common::on_ctrl_c();
    common::finish(parent())
}

fn producer(role: &Role) -> Result {
    let q = Queue::open(role.arg(0)?)?;
    for i in 0..5u64 {
        q.put_value(&i)?;
        println!("producer: put {i}");
        // Give the consumer a chance to run, as the tutorials' sleep does.
        std::thread::sleep(Duration::from_millis(10));
    }
    q.put(b"")?;
    println!("producer: put the sentinel");
    Ok(())
}

fn consumer(role: &Role) -> Result {
    let q = Queue::open(role.arg(0)?)?;
    loop {
        let msg = q.get()?;
        if msg.is_empty() {
            println!("consumer: got the sentinel, stopping");
            return Ok(());
        }
        let item = u64::from_ne_bytes(msg.as_slice().try_into()?);
        println!("consumer: got {item}");
    }
}

fn parent() -> Result {
    // Room for 4 messages of up to 8 bytes: the producer waits when it is full.
    let q = Queue::create(&common::name("queue"), 4, 8)?;
    let consumer = common::spawn("consumer", &[q.name()])?;
    let producer = common::spawn("producer", &[q.name()])?;
    producer.join()?;
    consumer.join()?;
    println!("parent: both done, {} messages left in the queue", q.len());
    Ok(())
}
