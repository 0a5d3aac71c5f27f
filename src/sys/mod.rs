//! The only place system calls on BPF objects are made: one function per
//! bpf(2) command, each filling only the `bpf_attr` fields it uses.
//!
//! Expected errnos become values (`ENOENT` from a lookup or next-key is
//! `Ok(None)`); every other failure is an [`Error`] naming the command and
//! its arguments. Every fd the kernel returns is owned ([`OwnedFd`]) and
//! close-on-exec (the kernel sets `O_CLOEXEC` on BPF fds).

mod bpf;
#[cfg(feature = "testing")]
pub mod hook;

pub use bpf::*;
