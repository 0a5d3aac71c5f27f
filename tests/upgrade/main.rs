// SPDX-License-Identifier: LGPL-2.1-or-later
//! Upgrades under running VMs: a distro upgrades the package (or replaces
//! libvirt's C code with this library), the daemon restarts, and the new
//! library must adopt what was attached before. Each earlier format is
//! built from this repository's own history (`scripts/old-builds.sh`,
//! cached), set up a cgroup in a process of its own, and is then adopted
//! by this build in another: the old rules are enforced throughout (a
//! probe loops in the cgroup all along) and a change works at once.
//!
//! One file per kind of upgrade:
//! - `releases`: from every earlier release of this library;
//! - `from_libvirt`: from libvirt's C code, under a probe loop.

#[path = "../common/mod.rs"]
mod common;
#[allow(dead_code)]
#[path = "../failclosed/helpers.rs"]
mod helpers;

mod from_libvirt;
mod releases;
