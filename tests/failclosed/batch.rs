// SPDX-License-Identifier: LGPL-2.1-or-later
//! Scenario: a change of many rules (`api::change`, which the admin
//! tool's `allow` and `deny` use) is all or nothing: a fault at any bpf(2)
//! call it makes, or more rules than a table holds, changes nothing.

use crate::common::*;
use crate::helpers::*;
use ::vircgroup_v2_devices::api::{self, Edit};
use ::vircgroup_v2_devices::rules::{READ, RW, WRITE};
use ::vircgroup_v2_devices::sys::{self, hook};
use std::path::Path;

/// deny_all, then `c 1:3 rw` and `c 136:* rw`: a map of 64.
fn base(mount: &Path) -> Scratch {
    let cg = Scratch::new(mount);
    api::deny_all(cg.p()).unwrap();
    api::allow(cg.p(), &rule(b'c', 1, 3, RW)).unwrap();
    api::allow(cg.p(), &rule(b'c', 136, -1, RW)).unwrap();
    cg
}

/// Changes that go in place, that grow the map, and that start by
/// denying every device.
fn batches() -> Vec<(&'static str, Vec<Edit>)> {
    let mut grow: Vec<Edit> = (0..100)
        .map(|m| Edit::Allow(rule(b'c', 300, m, READ)))
        .collect();
    grow.push(Edit::Deny(rule(b'c', 1, 3, RW)));
    vec![
        (
            "in place",
            vec![
                Edit::Deny(rule(b'c', 1, 3, WRITE)),
                Edit::Allow(rule(b'c', 1, 5, READ)),
                Edit::Allow(rule(b'b', 8, -1, READ)),
                Edit::Deny(rule(b'c', 136, -1, RW)),
                Edit::Allow(rule(b'c', 10, 200, RW)),
            ],
        ),
        ("growing the map from 64 to 128", grow),
        (
            "deny all, then allow",
            vec![Edit::DenyAll, Edit::Allow(rule(b'c', 1, 9, RW))],
        ),
    ]
}

/// Each bpf(2) call of each change fails in turn, on a fresh identical
/// cgroup: the change fails and the kernel holds the rules it had before,
/// or (a step that retries past one failure) it succeeds whole.
#[test]
fn a_fault_at_any_bpf_call_of_a_change_of_many_rules_changes_nothing() {
    let Some(mount) = privileged() else { return };
    let _s = shared();
    for (name, edits) in batches() {
        let cg = base(&mount);
        let before = hook::total_calls();
        api::change(cg.p(), &edits).unwrap();
        let n = hook::total_calls() - before;
        let want = kernel_view(cg.p()).1;
        drop(cg);
        for k in 0..n {
            let cg = base(&mount);
            let was = kernel_view(cg.p());
            hook::fail(None, k as u32, libc::EIO);
            let ret = api::change(cg.p(), &edits);
            let fired = hook::fired();
            hook::disarm();
            let what = format!("{name}: EIO at bpf call {k} of {n} ({fired:?})");
            let now = kernel_view(cg.p());
            match ret {
                Err(e) => {
                    assert!(fired.is_some(), "{what}: {e}");
                    assert_eq!(now, was, "{what}: failed ({e}) but changed the rules");
                }
                Ok(()) => {
                    // Not reached (a first call learns what later ones
                    // reuse), or a load retried with its verifier log.
                    assert!(
                        matches!(fired, None | Some(sys::cmd::PROG_LOAD)),
                        "{what}: succeeded"
                    );
                    assert_eq!(now.1, want, "{what}: succeeded in part");
                }
            }
        }
    }
}

/// More rules than a table holds (2^16): the change fails with E2BIG and
/// none of its rules is applied (before, 65,535 of 66,000 were).
#[test]
fn a_change_over_the_table_limit_changes_nothing() {
    let Some(mount) = privileged() else { return };
    let _s = shared();
    let cg = base(&mount);
    let was = kernel_view(cg.p());
    let edits: Vec<Edit> = (0..66_000)
        .map(|i| Edit::Allow(rule(b'c', 1000 + i / 1000, i % 1000, READ)))
        .collect();
    let ret = api::change(cg.p(), &edits);
    let now = kernel_view(cg.p());
    if hook::emulated().is_some_and(|k| k < sys::Since(5, 5)) {
        // No table before Linux 5.5: hash maps of that size are fine.
        ret.unwrap();
        assert_eq!(now.1.unwrap().1.len(), 66_002);
        return;
    }
    let e = ret.unwrap_err();
    assert_eq!(e.errno(), libc::E2BIG, "{e}");
    assert!(e.to_string().contains("too large"), "{e}");
    assert_eq!(now, was, "nothing changed");
}
