//! A child process fills a shared `Array<i32>`; the parent, once the child
//! has exited, prints what it wrote: `[5, 6, 7]`.
//!
//! Mirrors the shared-array example of Python's multiprocessing tutorials:
//!
//! ```python
//! def fill(arr):
//!     for i, x in enumerate([5, 6, 7]):
//!         arr[i] = x
//!
//! arr = Array('i', 3)
//! p = Process(target=fill, args=(arr,))
//! p.start(); p.join()
//! print(arr[:])                         # [5, 6, 7]
//! ```
//!
//! Run it with `cargo run --release --example fill_array`.

mod common;

use std::process::ExitCode;

use common::{Result, Role};
use shmkit::Array;

fn main() -> ExitCode {
    if let Some(role) = common::role() {
        return common::finish(fill(&role));
    }
    common::on_ctrl_c();
    common::finish(parent())
}

/// The child: opens the array by the name it was given and fills it.
fn fill(role: &Role) -> Result {
    let arr = Array::<i32>::open(role.arg(0)?)?;
    for (i, x) in [5, 6, 7].into_iter().enumerate() {
        arr.set(i, x)?;
    }
    println!("child {}: filled {}", std::process::id(), arr.name());
    Ok(())
}

fn parent() -> Result {
    let arr = Array::<i32>::create(&common::name("arr"), 3, 0)?;
    println!("parent: created {} = {:?}", arr.name(), arr.to_vec());
    common::spawn("fill", &[arr.name()])?.join()?;
    println!("{:?}", arr.to_vec());
    Ok(())
    // `arr` drops here and unlinks the segment.
}
