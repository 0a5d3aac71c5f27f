// SPDX-License-Identifier: LGPL-2.1-or-later
//! The only place system calls are made: one function per bpf(2) command,
//! each filling only the `bpf_attr` fields it uses (`bpf.rs`), the memory
//! of mmapable maps (`memory.rs`), the process-level calls (`process.rs`)
//! and, in test builds, the hook every bpf(2) call passes (`hook.rs`).
//!
//! Expected errnos become values (`ENOENT` from a lookup or next-key is
//! `Ok(None)`); every other failure is an [`Error`] naming the command and
//! its arguments. Every fd the kernel returns is owned ([`OwnedFd`]) and
//! close-on-exec (the kernel sets `O_CLOEXEC` on BPF fds).

mod bpf;
pub mod features;
#[cfg(feature = "testing")]
pub mod hook;
mod memory;
mod process;

pub use bpf::*;
pub use features::{raise_memlock, Feature};
pub use memory::MapMemory;
pub use process::*;
