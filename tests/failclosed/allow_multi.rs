// SPDX-License-Identifier: LGPL-2.1-or-later
//! Scenario 7: foreign ALLOW_MULTI programs (as systemd attaches them)
//! stay, and the policy is the intersection.

use crate::common::*;
use crate::growth::grow_under_probe;
use crate::helpers::*;
use ::vircgroup_v2_devices::capi::*;
use ::vircgroup_v2_devices::rules::READ;
use ::vircgroup_v2_devices::sys;

/// Scenario 7: two programs of someone else attached with
/// BPF_F_ALLOW_MULTI (as systemd does): one allows everything, one denies
/// major 241. create, prepare and growth (under a probe loop) work beside
/// them (ALLOW_MULTI, then BPF_F_REPLACE for ours), they are never detached
/// or replaced, and what the kernel enforces is the intersection.
#[test]
fn beside_allow_multi_programs_the_policy_is_the_intersection() {
    let Some(mount) = privileged() else { return };
    let _s = shared();
    let cg = Scratch::new(&mount);
    let devs = Devs::new();
    let p = c(cg.p());
    let allow_all = foreign_program(None);
    let deny_241 = foreign_program(Some(241));
    let foreign = vec![prog_id(&allow_all), prog_id(&deny_241)];
    attach_raw(&cg.path, &allow_all, sys::BPF_F_ALLOW_MULTI);
    attach_raw(&cg.path, &deny_241, sys::BPF_F_ALLOW_MULTI);
    let c241 = devs.nodes.node("c241_1", 'c', 241, 1);
    let c240 = devs.nodes.node("c240_1", 'c', 240, 1);
    let c242 = devs.nodes.node("c242_1", 'c', 242, 1);
    // Theirs only: everything but major 241.
    assert_enforced(
        &cg,
        &[(format!("r:{c241}"), false), (format!("r:{c242}"), true)],
        "foreign programs only",
    );
    // SAFETY: valid C string.
    assert_eq!(
        unsafe { vircgroup_v2_devices_create_prog(p.as_ptr()) },
        0,
        "{}",
        last_error()
    );
    let ids = cg.attached();
    assert_eq!(ids.len(), 3, "ours next to theirs: {ids:?}");
    assert!(foreign.iter().all(|id| ids.contains(id)));
    for (t, ma, mi, perms) in [(b'c', 241, 1, READ), (b'c', 240, 1, READ)] {
        assert_eq!(allow_c(&p, t, ma, mi, perms), 0, "{}", last_error());
    }
    // Ours allows 240:1 and 241:1, theirs deny 241: the kernel allows 240:1 only.
    let intersection = [
        (format!("r:{c240}"), true),
        (format!("r:{c241}"), false),
        (format!("r:{c242}"), false),
    ];
    assert_enforced(&cg, &intersection, "ours and theirs");
    // prepare_prog on a full map grows it, replacing ours only.
    for minor in 0..61 {
        assert_eq!(allow_c(&p, b'c', 600, minor, READ), 0, "{}", last_error());
    }
    assert_eq!(get_state(&p).count, 63);
    assert_eq!(allow_c(&p, b'c', 600, 61, READ), 0, "{}", last_error());
    assert_eq!((get_state(&p).count, get_state(&p).max), (64, 64));
    let before = cg.attached();
    // SAFETY: valid C string.
    assert_eq!(
        unsafe { vircgroup_v2_devices_prepare_prog(p.as_ptr()) },
        0,
        "{}",
        last_error()
    );
    assert_eq!(get_state(&p).max, 128);
    let after = cg.attached();
    assert_eq!(
        after.len(),
        3,
        "replaced, not added: {before:?} -> {after:?}"
    );
    let flags = ::vircgroup_v2_devices::cgroup::Cgroup::open(cg.p())
        .and_then(|c| c.attached())
        .unwrap()
        .flags;
    assert_eq!(flags, sys::BPF_F_ALLOW_MULTI, "the cgroup's attach flags");
    assert!(foreign.iter().all(|id| after.contains(id)));
    assert_ne!(after, before);
    drop(cg);

    // Growth under a probe loop, beside them: the probe also checks that
    // theirs keep denying 241 all along.
    let cg = Scratch::new(&mount);
    attach_raw(&cg.path, &allow_all, sys::BPF_F_ALLOW_MULTI);
    attach_raw(&cg.path, &deny_241, sys::BPF_F_ALLOW_MULTI);
    let (rounds, replacements) = grow_under_probe(&cg, &devs, 1024, &[format!("r:{c241}")]);
    assert!(
        (4..=4 + 1024 / 100).contains(&replacements),
        "64 -> 1024 is 4 doublings (and now and then a rebuild): {replacements}"
    );
    let ids = cg.attached();
    assert_eq!(ids.len(), 3);
    assert!(foreign.iter().all(|id| ids.contains(id)));
    // deny_all and detach_prog leave theirs alone.
    let p = c(cg.p());
    // SAFETY: valid C string.
    assert_eq!(unsafe { vircgroup_v2_deny_all_devices(p.as_ptr()) }, 0);
    assert_eq!(cg.attached().len(), 3);
    // SAFETY: valid C string.
    assert_eq!(unsafe { vircgroup_v2_devices_detach_prog(p.as_ptr()) }, 0);
    assert_eq!(cg.attached(), foreign, "theirs, untouched, in their order");
    assert_enforced(
        &cg,
        &[(format!("r:{c241}"), false), (format!("r:{c242}"), true)],
        "ours detached",
    );
    eprintln!("allow_multi: growth 64 -> 1024 beside 2 foreign programs, {replacements} replacements, {rounds} probe rounds, no wrong answer");
}
