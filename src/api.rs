// SPDX-License-Identifier: LGPL-2.1-or-later
//! The library's calls as Rust functions, in one place: the C API
//! (`capi`), the admin tool, the tests and the benchmark call these.
#![forbid(unsafe_code)]

pub use crate::effective::{check, explain, list, rules_in_force, Explanation, Owner, Verdict};
pub use crate::held::State;
pub use crate::inspect::{inspect, Inspection};
pub use crate::policy::{
    allow, allow_path, attach_prog, change, create_prog, deny, deny_all, deny_path, detach_prog,
    detect_prog, device_rule, prepare_prog, remove_prog, state, Edit, INITIAL_MAX,
};
pub use crate::recognise::Program;

/// Whether a device program can be queried at `path`.
pub fn available(path: impl AsRef<std::path::Path>) -> bool {
    let path = path.as_ref();
    match crate::cgroup::Cgroup::open(path).and_then(|cg| cg.attached()) {
        Ok(_) => true,
        Err(e) => {
            log::info!("cgroup v2 device programs are not available: {e}");
            false
        }
    }
}
