//! The OS layer: every libc call shmkit makes lives below this module, so a
//! port to another Unix is a port of one file. Only Linux is implemented;
//! elsewhere the crate refuses to compile rather than pretend (see
//! ARCHITECTURE.md).

#![cfg_attr(loom, allow(dead_code))]

#[cfg(target_os = "linux")]
#[path = "linux.rs"]
mod imp;

#[cfg(not(target_os = "linux"))]
compile_error!("shmkit supports Linux only for now (futex(2), /proc); see ARCHITECTURE.md");

pub(crate) use imp::*;
