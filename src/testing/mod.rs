// SPDX-License-Identifier: LGPL-2.1-or-later
//! What tests and the benchmark use and the release library leaves out:
//! the programs' disassembly (for the golden listings) and, with the
//! `testing` feature, what the kernel runs for a cgroup (for the oracle).
#![forbid(unsafe_code)]

pub mod disasm;
#[cfg(feature = "testing")]
mod snapshot;

#[cfg(feature = "testing")]
pub use snapshot::{kernel_view, snapshot, KernelView};
