// SPDX-License-Identifier: LGPL-2.1-or-later
//! The library's calls, as Rust functions (the C API in `capi` wraps each
//! of them), gathered from the files that hold them:
//!
//! | what | where |
//! | --- | --- |
//! | detect / create / prepare / attach / allow / deny / deny-all / remove / detach | `policy.rs` |
//! | check / list / inspect (read only) | `inspect.rs` |
//! | where a program is recognised | `recognise.rs` |
//! | where maps are built and a program installed | `install.rs` |
//! | the table (format 6) and the hash maps (format 5) | `table/`, `hashmaps.rs` |
//! | the state per cgroup | `registry.rs`, `held.rs` |
//! | what the kernel runs, for the oracle (`testing` feature) | `snapshot.rs` |
#![forbid(unsafe_code)]

pub use crate::held::State;
pub use crate::inspect::{check, inspect, list, Inspection};
pub use crate::policy::{
    allow, allow_path, attach_prog, change, create_prog, deny, deny_all, deny_path, detach_prog,
    detect_prog, device_rule, prepare_prog, remove_prog, state, Edit, INITIAL_MAX,
};
pub use crate::recognise::Program;
#[cfg(feature = "testing")]
pub use crate::snapshot::{kernel_view, snapshot, KernelView};

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
