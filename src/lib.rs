//! libvirt's cgroup v2 device control, in Rust, behind a C ABI.
//!
//! Where things live:
//! - `insn`: the 8-byte BPF instruction and its constructors.
//! - `program`: the device program (ours and libvirt's), one instruction per line.
//! - `rules`: device rules <-> map keys and values, cgroup v1 rule text.
//! - `sys`: the only place bpf(2) is called.
//! - `cgroup`: a cgroup v2 directory: validation, identity, attached programs.
//! - `devices`: detect / create / prepare / attach / allow / deny (the policy).
//! - `registry`: the process-wide state per cgroup.
//! - `rollback`: a cgroup converted back to libvirt's own program and map.
//! - `capi`: every `extern "C"` export, errno, last error, log callback.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod capi;
/// cbindgen:ignore
pub mod cgroup;
/// cbindgen:ignore
pub mod devices;
/// cbindgen:ignore
pub mod error;
/// cbindgen:ignore
pub mod insn;
/// cbindgen:ignore
pub mod program;
/// cbindgen:ignore
mod registry;
/// cbindgen:ignore
pub mod rollback;
/// cbindgen:ignore
pub mod rules;
/// cbindgen:ignore
pub mod sys;

pub use error::{Error, Result};
