// SPDX-License-Identifier: LGPL-2.1-or-later
//! An upgrade from libvirt's C code under a probe loop.

use crate::common::*;
use crate::helpers::*;
use ::vircgroup_v2_devices::api;
use ::vircgroup_v2_devices::rules::{READ, RW};
use ::vircgroup_v2_devices::sys;
use std::os::fd::BorrowedFd;

/// A cgroup set up by libvirt's C code (the seed's program, its
/// map encoding, attached without flags) is adopted by the next
/// `allow_device`: every old rule and the new one enforced, count and max
/// right, our program attached and libvirt's gone. A probe inside the
/// cgroup loops over listed and unlisted devices through every switch
/// (libvirt's program is put back each round, as a libvirt daemon that
/// still runs would), and must never see a listed device denied or an
/// unlisted one allowed.
#[test]
fn upgrade_from_libvirt_never_lets_a_listed_device_down_nor_another_in() {
    let Some(mount) = privileged() else { return };
    let _s = shared();
    let cg = Scratch::new(&mount);
    let p = c(cg.p());
    let n = Nodes::new();
    // libvirt's rules: /dev/null, the ptys, device 0:0 (key 0), a block
    // device read-only, /dev/kvm.
    let libvirt_rules = [
        (b'c', 1, 3, RW),
        (b'c', 136, -1, RW),
        (b'c', 0, 0, RW),
        (b'b', 240, 0, READ),
        (b'c', 10, 232, RW),
    ];
    let null = n.node("null", 'c', 1, 3);
    let pts = n.node("pts", 'c', 136, 5);
    let zero_zero = n.node("c0_0", 'c', 0, 0);
    let blk = n.node("b240_0", 'b', 240, 0);
    let kvm = n.node("kvm", 'c', 10, 232);
    let listed = [
        format!("rw:{null}"),
        format!("rw:{pts}"),
        format!("rw:{zero_zero}"),
        format!("r:{blk}"),
        format!("f:{kvm}"),
        format!("f:{null}"),
    ];
    let unlisted = [
        format!("r:{}", n.node("zero", 'c', 1, 5)),
        format!("r:{}", n.node("c137_5", 'c', 137, 5)),
        format!("r:{}", n.node("b136_5", 'b', 136, 5)),
        format!("r:{}", n.node("c0_1", 'c', 0, 1)),
        format!("r:{}", n.node("b1_3", 'b', 1, 3)),
        format!("w:{blk}"),
        format!("f:{}", n.node("c241_8", 'c', 241, 8)),
    ];
    let new_node = n.node("c241_7", 'c', 241, 7);
    let accesses: Vec<String> = listed.iter().chain(&unlisted).cloned().collect();
    let expected_list = "b 240:0 r\nc 0:0 rw\nc 1:3 rw\nc 10:232 rw\nc 136:* rw\nc 241:7 rw\n";

    let mut libvirt_id = attach_like_libvirt(&cg.path, 64, &libvirt_rules);
    let mut cases: Vec<(String, bool)> = listed.iter().map(|a| (a.clone(), true)).collect();
    cases.extend(unlisted.iter().map(|a| (a.clone(), false)));
    assert_enforced(&cg, &cases, "libvirt's program, before the upgrade");

    const ROUNDS: usize = 40;
    let probe = ProbeLoop::start(&cg.path, &accesses);
    for round in 0..ROUNDS {
        if round > 0 {
            // libvirt's daemon puts its program back (replacing ours).
            libvirt_id = attach_like_libvirt(&cg.path, 64, &libvirt_rules);
        }
        assert_eq!(cg.attached(), vec![libvirt_id]);
        assert_eq!(
            allow_c(&p, b'c', 241, 7, RW),
            0,
            "round {round}: {}",
            last_error()
        );
        let s = get_state(&p);
        assert_eq!((s.count, s.max), (6, 64), "round {round}");
        let ours = api::inspect(cg.p()).unwrap();
        let (prog, _) = ours.rules.expect("our program");
        assert!(!ours.libvirt, "round {round}: still libvirt's program");
        assert!(ours.others.is_empty(), "round {round}: {:?}", ours.others);
        assert!(is_our_program(&prog.name), "{}", prog.name);
        assert_eq!(
            cg.attached(),
            vec![prog.id],
            "round {round}: libvirt's gone"
        );
        // SAFETY: the fd is the library's and stays open during the call.
        let held = unsafe { BorrowedFd::borrow_raw(s.progfd) };
        assert_eq!(sys::prog_info(held).unwrap().id, prog.id);
        assert_eq!(cg.list(), expected_list, "round {round}");
    }
    let counts = probe.stop();
    for (i, access) in accesses.iter().enumerate() {
        if i < listed.len() {
            assert_eq!(counts.denied(i), 0, "{access} was denied: {counts:?}");
        } else {
            assert_eq!(counts.passed(i), 0, "{access} got through: {counts:?}");
        }
    }
    eprintln!(
        "upgrade: {ROUNDS} adoptions of libvirt's program (and {} switches back to it), \
         {} probe rounds of {} accesses, no wrong answer",
        ROUNDS - 1,
        counts.iterations,
        accesses.len()
    );
    cases.push((format!("rw:{new_node}"), true));
    assert_enforced(&cg, &cases, "after the upgrade");
}
