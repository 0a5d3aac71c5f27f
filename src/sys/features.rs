// SPDX-License-Identifier: LGPL-2.1-or-later
//! Kernel features newer than Linux 4.15 that the library uses, each with
//! a fallback that keeps the same policy and guarantees. Each is probed by
//! trying it once (the first `EINVAL` says the kernel lacks it) and the
//! answer is kept for the process; the debug log says which path is taken.
//! Nothing here reads the kernel's version string.
//!
//! | feature | since | fallback |
//! | --- | --- | --- |
//! | `BPF_MAP_UPDATE_BATCH`, `BPF_MAP_LOOKUP_BATCH` | 5.6 | one call per entry |
//! | `BPF_F_REPLACE` | 5.6 | beside `BPF_F_ALLOW_MULTI` programs: attach the new program, then detach the old (in between both run: allowed only what both allow) |
//! | `BPF_F_MMAPABLE` arrays, `BPF_LD_MAP_VALUE` | 5.5, 5.2 | the format 5 program on a hash map and an index (`install`) |
//! | memory cgroup accounting of BPF | 5.11 | raise `RLIMIT_MEMLOCK` (`memlock.rs`) |
use std::sync::atomic::{AtomicU8, Ordering};

/// A probed kernel feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    /// Batch map commands (5.6).
    Batch,
    /// `BPF_F_REPLACE` (5.6).
    Replace,
    /// The table: `BPF_F_MMAPABLE` (5.5) with `BPF_LD_MAP_VALUE` (5.2).
    Table,
}

const UNKNOWN: u8 = 0;
const YES: u8 = 1;
const NO: u8 = 2;

static STATE: [AtomicU8; 3] = [
    AtomicU8::new(UNKNOWN),
    AtomicU8::new(UNKNOWN),
    AtomicU8::new(UNKNOWN),
];

/// What is known of `f`: None until it was tried.
pub fn has(f: Feature) -> Option<bool> {
    match STATE[f as usize].load(Ordering::Acquire) {
        YES => Some(true),
        NO => Some(false),
        _ => None,
    }
}

/// Records what a try of `f` showed (the first answer stays).
pub fn set(f: Feature, yes: bool) {
    let v = if yes { YES } else { NO };
    if STATE[f as usize]
        .compare_exchange(UNKNOWN, v, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
    {
        let (what, fallback) = match f {
            Feature::Batch => ("batch map commands", "one call per map entry"),
            Feature::Replace => (
                "BPF_F_REPLACE",
                "beside ALLOW_MULTI programs, attach the new program, then detach the old",
            ),
            Feature::Table => (
                "mmapable array maps with direct value access",
                "the format 5 program (a hash map and an index)",
            ),
        };
        if yes {
            log::debug!("the kernel has {what}");
        } else {
            log::info!("the kernel has no {what}: using {fallback}");
        }
    }
}

/// The first Linux release that has what a call needs: the command, or a
/// flag or instruction it passes. Documented per call; in test builds the
/// hook can emulate an older kernel by refusing calls newer than it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Since(pub u32, pub u32);

/// What every call of this library needs at least: `BPF_PROG_TYPE_CGROUP_DEVICE`,
/// `BPF_PROG_QUERY` and object names came with Linux 4.15.
pub const BASE: Since = Since(4, 15);
