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

/// The rule `t ma:mi p` (-1: any), for unit tests.
#[cfg(test)]
pub(crate) fn rule(t: u8, ma: i32, mi: i32, p: i32) -> crate::rules::Rule {
    crate::rules::Rule::new(t, ma, mi, p).unwrap()
}

/// The map entries (rule encoding) of `rules`, for unit tests.
#[cfg(test)]
pub(crate) fn map_of(rules: &[crate::rules::Rule]) -> std::collections::HashMap<u64, u32> {
    let mut map = std::collections::HashMap::new();
    for r in rules {
        *map.entry(r.key()).or_insert(0) |= r.value();
    }
    map
}

/// The map entries of rules written as cgroup v1 text, for unit tests.
#[cfg(test)]
pub(crate) fn rules_map(text: &[&str]) -> std::collections::HashMap<u64, u32> {
    let rules: Vec<crate::rules::Rule> = text.iter().map(|t| t.parse().unwrap()).collect();
    map_of(&rules)
}
