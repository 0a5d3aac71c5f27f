// SPDX-License-Identifier: LGPL-2.1-or-later
//! Fail closed and lose nothing, against the real kernel. Runs
//! as root; under CI=true a test that cannot run fails. One scenario per
//! file:
//!
//! - `restart`: a restart after SIGKILL in the middle of a batch of allows;
//! - `growth`: growth from 64 to 8192 rules under probing;
//! - `faults`: a fault at every bpf(2) call of every operation changes nothing;
//! - `threads`: threads on many cgroups against a model;
//! - `stale`: stale state (a cgroup made again, a program swapped in);
//! - `allow_multi`: beside foreign ALLOW_MULTI programs;
//! - `unprivileged`: callers without the privileges get EPERM naming them;
//! - `cycles`: many create/remove cycles keep fds and RSS flat;
//! - `batch`: a change of many rules, under faults and over the limit, is
//!   all or nothing.
//!
//! `helpers` holds what they share (the fd lock, the heap counter, the C
//! ABI as C calls it, the kernel's view of a cgroup; `tests/upgrade` uses
//! them too); `../common` what every privileged test binary shares.

#[path = "../common/mod.rs"]
mod common;
mod helpers;

mod allow_multi;
mod batch;
mod cycles;
mod faults;
mod growth;
mod restart;
mod stale;
mod threads;
mod unprivileged;
