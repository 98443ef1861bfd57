//! Review: handles opened over a payload too short for their core must be
//! `Error::Corrupted` naming the segment, whatever the handle type.

#![cfg(not(loom))]

mod common;

use std::io::{Seek, SeekFrom, Write};
use std::time::Duration;

use common::{watchdog, Cleanup};
use shmkit::{Array, Error, Event, Lock, Pipe, Queue, Value};

fn shm_path(name: &str) -> String {
    format!("/dev/shm/{name}")
}

/// Cuts the object to the header plus `payload` bytes and records that
/// length in the header, as a hostile (or buggy) peer could.
fn shorten(name: &str, payload: u64) {
    let total = 64 + payload;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(shm_path(name))
        .unwrap();
    f.set_len(total).unwrap();
    f.seek(SeekFrom::Start(32)).unwrap();
    f.write_all(&total.to_ne_bytes()).unwrap();
}

/// What is wrong with `r`, if anything.
fn not_corrupted_naming(what: &str, name: &str, r: Result<(), Error>) -> Option<String> {
    match r {
        Err(Error::Corrupted { name: n, .. }) if n == name => None,
        Err(Error::Corrupted { name: n, detail }) => Some(format!(
            "{what}: Corrupted names {n:?}, not the segment ({detail})"
        )),
        Err(e) => Some(format!(
            "{what}: expected Error::Corrupted naming the segment, got {e:?}"
        )),
        Ok(()) => Some(format!("{what}: a too-short payload was accepted")),
    }
}

#[test]
fn too_short_payload_is_corrupted_naming_the_segment_for_every_handle() {
    let _w = watchdog(Duration::from_secs(30));
    let mut names = Vec::new();
    let mut fails = Vec::new();
    for cut in [0u64, 8] {
        let l = Lock::create_unique().unwrap();
        l.keep();
        let e = Event::create_unique().unwrap();
        e.keep();
        let q = Queue::create_unique(4, 16).unwrap();
        q.keep();
        let p = Pipe::create_unique().unwrap();
        p.keep();
        let v = Value::<u64>::create_unique(1).unwrap();
        v.keep();
        let a = Array::<u64>::create_unique(0, 0).unwrap();
        a.keep();
        let all = [
            ("Lock", l.name().to_owned()),
            ("Event", e.name().to_owned()),
            ("Queue", q.name().to_owned()),
            ("Pipe", p.name().to_owned()),
            ("Value", v.name().to_owned()),
            ("Array", a.name().to_owned()),
        ];
        drop((l, e, q, p, v, a));
        let _c = Cleanup(all.iter().map(|(_, n)| n.clone()).collect());
        for (what, name) in &all {
            // An event's core fits in 8 bytes: cut it to 2, as the
            // segment tests do.
            let cut = if *what == "Event" { cut.min(2) } else { cut };
            shorten(name, cut);
            let r = match *what {
                "Lock" => Lock::open(name).map(drop),
                "Event" => Event::open(name).map(drop),
                "Queue" => Queue::open(name).map(drop),
                "Pipe" => Pipe::open(name).map(drop),
                "Value" => Value::<u64>::open(name).map(drop),
                _ => Array::<u64>::open(name).map(drop),
            };
            let what = format!("{what} over a {cut}-byte payload");
            fails.extend(not_corrupted_naming(&what, name, r));
        }
        names.extend(all.into_iter().map(|(_, n)| n));
    }
    assert!(fails.is_empty(), "{fails:#?}");
}

/// A payload type aligned past the 64 bytes a segment's payload offers.
#[derive(Clone, Copy, bytemuck::Zeroable, bytemuck::Pod)]
#[repr(C, align(128))]
struct Wide([u8; 128]);

/// Before 196a9a6 (handle.rs) the refusal of an over-aligned type named
/// the segment ("segment \"x\": ... needs 128-byte alignment"), and `open`
/// refused before touching the name; now the message names no segment.
#[test]
fn an_over_aligned_type_is_refused_naming_the_segment() {
    let _w = watchdog(Duration::from_secs(30));
    let name = common::unique_name("review-wide");
    let _c = Cleanup(vec![name.clone()]);
    let mut fails = Vec::new();
    for (what, r) in [
        (
            "Value::create",
            Value::create(&name, Wide([0; 128])).map(drop),
        ),
        (
            "Array::create",
            Array::create(&name, 1, Wide([0; 128])).map(drop),
        ),
        ("Value::open", Value::<Wide>::open(&name).map(drop)),
        ("Array::open", Array::<Wide>::open(&name).map(drop)),
    ] {
        match r {
            Err(Error::InvalidArgument(m)) if m.contains(&name) => {}
            r => fails.push(format!("{what}: {r:?}")),
        }
    }
    assert!(
        std::fs::metadata(shm_path(&name)).is_err(),
        "a refused create left its segment"
    );
    assert!(fails.is_empty(), "{fails:#?}");
}
