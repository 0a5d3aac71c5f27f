// SPDX-License-Identifier: LGPL-2.1-or-later
//! libvirt's cgroup v2 device control, in Rust, behind a C ABI.
//!
//! Where things live:
//! - `insn`: the 8-byte BPF instruction and its constructors.
//! - `program`: the device programs (ours in each format, earlier
//!   releases', libvirt's), one instruction per line.
//! - `rules`: device rules <-> map keys and values, cgroup v1 rule text.
//! - `table`: the rule table of format 6 (its layout, its writers' lock).
//! - `hash`: the hash map and index of format 5 (kernels before 5.5).
//! - `sys`: the only place system calls are made (and kernel features
//!   probed).
//! - `cgroup`: a cgroup v2 directory: validation, identity, lock, programs.
//! - `recognise`: what program a cgroup has: ours, an earlier release's,
//!   libvirt's, someone else's.
//! - `install`: maps built, a program loaded and attached in one step.
//! - `policy`: detect / create / prepare / attach / allow / deny.
//! - `inspect`: check / list / inspect, read only.
//! - `api`: all the calls above in one place.
//! - `registry`, `held`, `process`: the state per cgroup, fork safety.
//! - `rollback`: a cgroup converted back to libvirt's own program and map.
//! - `capi`: every `extern "C"` export, errno, last error, the log
//!   callback.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

/// cbindgen:ignore
pub mod api;
pub mod capi;
/// cbindgen:ignore
pub mod cgroup;
/// cbindgen:ignore
pub mod error;
/// cbindgen:ignore
pub mod hash;
/// cbindgen:ignore
mod held;
/// cbindgen:ignore
pub mod insn;
/// cbindgen:ignore
mod inspect;
/// cbindgen:ignore
mod install;
/// cbindgen:ignore
mod policy;
/// cbindgen:ignore
pub mod process;
/// cbindgen:ignore
pub mod program;
/// cbindgen:ignore
mod recognise;
/// cbindgen:ignore
mod registry;
/// cbindgen:ignore
pub mod rollback;
/// cbindgen:ignore
pub mod rules;
/// cbindgen:ignore
pub mod sys;
/// cbindgen:ignore
pub mod table;
#[cfg(any(test, feature = "testing"))]
/// cbindgen:ignore
pub mod testing;

pub use error::{Error, Result};
