// SPDX-License-Identifier: LGPL-2.1-or-later
//! libvirt's cgroup v2 device control, in Rust, behind a C ABI.
//!
//! Where things live, in layers: each module imports only modules listed
//! before it.
//! - `error`: the error type (an errno and a message).
//! - `insn`: the 8-byte BPF instruction and its constructors.
//! - `rules`: the rule model, the map encoding and libvirt's
//!   (`rules/mod.rs`); cgroup v1 rule text (`rules/text.rs`).
//! - `sys`: the only place system calls are made: bpf(2) (`sys/bpf.rs`),
//!   kernel features probed, `RLIMIT_MEMLOCK`, map memory, the rest.
//! - `process`: this process's identity across `fork`.
//! - `cgroup`: a cgroup v2 directory: validation, identity, lock, programs.
//! - `table`: format 6, the rule table: its layout and encoders, its
//!   builder, the mapped table and its writer.
//! - `hash`: format 5, the hash map and its index (kernels before 5.5).
//! - `program`: the device programs (ours in each format, earlier
//!   releases', libvirt's), one instruction per line.
//! - `held`, `registry`: the program and maps held per cgroup, the
//!   process-wide state.
//! - `recognise`: what program a cgroup has, and where earlier formats are
//!   recognised: ours, an earlier release's, libvirt's, someone else's.
//! - `install`: maps built, a program loaded and attached in one step.
//! - `policy`: the allow/deny logic: detect / create / prepare / attach /
//!   allow / deny.
//! - `inspect`: inspect (what one cgroup holds), read only.
//! - `effective`: check / list / explain: what the kernel enforces for a
//!   process in a cgroup, every program on the way (`interpret` runs
//!   someone else's, from the instructions the kernel reports).
//! - `rollback`: a cgroup converted back to libvirt's own program and map.
//! - `testing`: what only tests use (`testing` feature).
//! - `api`: all the library's calls in one place, as Rust functions.
//! - `capi`: where C comes in: every `extern "C"` export, errno, last
//!   error, the log callback.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

/// cbindgen:ignore
pub mod api;
pub mod capi;
/// cbindgen:ignore
pub mod cgroup;
/// cbindgen:ignore
mod effective;
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
pub mod interpret;
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
