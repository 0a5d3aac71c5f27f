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
//! | memory cgroup accounting of BPF | 5.11 | raise `RLIMIT_MEMLOCK` (`memlock_retry`) |
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

/// Raises `RLIMIT_MEMLOCK` as far as this process may: the soft limit to
/// the hard one, then both to unlimited (which needs `CAP_SYS_RESOURCE`).
/// True when the limit changed.
pub fn raise_memlock() -> bool {
    let Ok((soft, hard)) = super::memlock_limit() else {
        return false;
    };
    let unlimited = super::UNLIMITED;
    if soft == unlimited {
        return false;
    }
    let raised = if super::set_memlock_limit(unlimited, unlimited).is_ok() {
        unlimited
    } else if hard > soft && super::set_memlock_limit(hard, hard).is_ok() {
        hard
    } else {
        return false;
    };
    log::info!(
        "raised RLIMIT_MEMLOCK from {soft} to {}: before Linux 5.11 BPF maps and programs \
         are charged to it",
        if raised == unlimited {
            "unlimited".to_string()
        } else {
            raised.to_string()
        }
    );
    true
}
