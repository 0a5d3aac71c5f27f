// SPDX-License-Identifier: LGPL-2.1-or-later
//! The only place system calls are made: one function per bpf(2) command,
//! each filling only the `bpf_attr` fields it uses (`bpf.rs`; the command
//! numbers are `cmd.rs`), the kernel
//! features probed and the release each call needs (`features.rs`),
//! `RLIMIT_MEMLOCK` (`memlock.rs`), the memory of mmapable maps
//! (`memory.rs`), the other calls (`os.rs`) and, with the `testing`
//! feature, the hook every bpf(2) call passes (`hook.rs`). (`capi` uses
//! libc's allocator for strings a C caller frees: no system call.)
//!
//! Expected errnos become values (`ENOENT` from a lookup or next-key is
//! `Ok(None)`); every other failure is an [`Error`] naming the command and
//! its arguments. Every fd the kernel returns is owned ([`OwnedFd`]) and
//! close-on-exec (the kernel sets `O_CLOEXEC` on BPF fds).

mod bpf;
pub mod cmd;
pub mod features;
#[cfg(feature = "testing")]
pub mod hook;
mod memlock;
mod memory;
mod os;

pub use bpf::*;
pub use features::{Feature, Since, BASE};
pub use memlock::{memlock_limit, raise_memlock, set_memlock_limit, UNLIMITED};
pub use memory::MapMemory;
pub use os::*;
