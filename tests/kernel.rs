// SPDX-License-Identifier: LGPL-2.1-or-later
//! The library against the real kernel: scratch cgroups, a probe process
//! inside them, EPERM for a denial. Runs as root; under CI=true a test that
//! cannot run fails.

mod common;

use common::*;
use std::os::fd::AsFd;
use vircgroup_v2_devices::program::libvirt_program;
use vircgroup_v2_devices::rules::{self, Rule, READ, RW, RWM, WRITE};
use vircgroup_v2_devices::{api, sys};

fn rule(t: u8, ma: i32, mi: i32, p: i32) -> Rule {
    Rule::new(t, ma, mi, p).unwrap()
}

/// An access and the rule `check` is asked about for it.
fn case(
    access: &str,
    path: &str,
    rule: Option<Rule>,
    allowed: bool,
) -> (String, Option<Rule>, bool) {
    (format!("{access}:{path}"), rule, allowed)
}

/// Nodes without a driver (open gives ENXIO once the cgroup lets it through),
/// and /dev/null's numbers.
struct Devs {
    nodes: Nodes,
    null: String,
    c240_1: String,
    c240_2: String,
    c241_1: String,
    c241_5: String,
    c242_9: String,
    c243_9: String,
    b240_1: String,
    b243_9: String,
    b1_3: String,
}

impl Devs {
    fn new() -> Devs {
        let nodes = Nodes::new();
        Devs {
            null: nodes.node("null", 'c', 1, 3),
            c240_1: nodes.node("c240_1", 'c', 240, 1),
            c240_2: nodes.node("c240_2", 'c', 240, 2),
            c241_1: nodes.node("c241_1", 'c', 241, 1),
            c241_5: nodes.node("c241_5", 'c', 241, 5),
            c242_9: nodes.node("c242_9", 'c', 242, 9),
            c243_9: nodes.node("c243_9", 'c', 243, 9),
            b240_1: nodes.node("b240_1", 'b', 240, 1),
            b243_9: nodes.node("b243_9", 'b', 243, 9),
            b1_3: nodes.node("b1_3", 'b', 1, 3),
            nodes,
        }
    }
}

#[test]
fn libvirt_program_has_the_kernel_tag_of_the_seed() {
    let Some(_) = privileged() else { return };
    let map = sys::map_create(sys::BPF_MAP_TYPE_HASH, 8, 4, 65, "golden").unwrap();
    let prog = sys::prog_load(
        sys::BPF_PROG_TYPE_CGROUP_DEVICE,
        &libvirt_program(std::os::fd::AsRawFd::as_raw_fd(&map)),
        "GPL",
        "",
    )
    .unwrap();
    let tag = sys::prog_info(prog.as_fd()).unwrap().tag;
    let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    // The kernel's tag of the seed's 69 instructions: the first 8 bytes of
    // their SHA-1 (Linux 4.13 to 6.x, Debian's 5.10, 6.1 and 6.12), or of
    // their SHA-256 on the kernels that switched (6.18 here).
    assert!(
        ["b95e404d31962705", "9b92522e365f8863"].contains(&hex.as_str()),
        "tag {hex}"
    );
}

#[test]
fn a_refused_program_reports_the_verifier_log() {
    let Some(_) = privileged() else { return };
    // Reads r0 before anything set it.
    let bad = [vircgroup_v2_devices::insn::exit()];
    let err = sys::prog_load(sys::BPF_PROG_TYPE_CGROUP_DEVICE, &bad, "GPL", "bad").unwrap_err();
    assert_eq!(err.errno(), libc::EACCES, "{err}");
    assert!(err.to_string().contains("BPF_PROG_LOAD"), "{err}");
    assert!(err.to_string().contains("R0 !read_ok"), "{err}");
}

#[test]
fn deny_all_denies_everything_and_drops_old_rules() {
    let Some(mount) = privileged() else { return };
    let cg = Scratch::new(&mount);
    let d = Devs::new();
    // No program: everything allowed, and list says so.
    assert_eq!(cg.list(), "a *:* rwm\n");
    cg.expect(&[case("r", &d.null, Some(rule(b'c', 1, 3, READ)), true)]);
    api::allow(cg.p(), &rule(b'c', 1, 3, RW)).unwrap();
    api::allow(cg.p(), &rule(b'b', 240, -1, RW)).unwrap();
    api::deny_all(cg.p()).unwrap();
    assert_eq!(cg.list(), "");
    assert_eq!(cg.state().count, 0);
    cg.expect(&[
        case("r", &d.null, Some(rule(b'c', 1, 3, READ)), false),
        case("w", &d.null, Some(rule(b'c', 1, 3, WRITE)), false),
        case("r", &d.c240_1, Some(rule(b'c', 240, 1, READ)), false),
        case("r", &d.b240_1, Some(rule(b'b', 240, 1, READ)), false),
        case("f", &d.null, None, false),
        (
            format!("mknod:c:240:1:{}", d.nodes.fresh("m1")),
            Some(rule(b'c', 240, 1, rules::MKNOD)),
            false,
        ),
    ]);
    assert_eq!(cg.attached().len(), 1);
}

#[test]
fn exact_and_wildcard_rules() {
    let Some(mount) = privileged() else { return };
    let cg = Scratch::new(&mount);
    let d = Devs::new();
    api::deny_all(cg.p()).unwrap();
    api::allow(cg.p(), &rule(b'c', 240, 1, RW)).unwrap();
    api::allow(cg.p(), &rule(b'c', 241, -1, READ)).unwrap();
    api::allow(cg.p(), &rule(b'c', -1, 9, WRITE)).unwrap();
    assert_eq!(cg.list(), "c 240:1 rw\nc 241:* r\nc *:9 w\n");
    cg.expect(&[
        // exact
        case("rw", &d.c240_1, Some(rule(b'c', 240, 1, RW)), true),
        case("r", &d.c240_2, Some(rule(b'c', 240, 2, READ)), false),
        case("r", &d.b240_1, Some(rule(b'b', 240, 1, READ)), false),
        // major wildcard
        case("r", &d.c241_1, Some(rule(b'c', 241, 1, READ)), true),
        case("r", &d.c241_5, Some(rule(b'c', 241, 5, READ)), true),
        case("w", &d.c241_5, Some(rule(b'c', 241, 5, WRITE)), false),
        // minor wildcard
        case("w", &d.c242_9, Some(rule(b'c', 242, 9, WRITE)), true),
        case("w", &d.c243_9, Some(rule(b'c', 243, 9, WRITE)), true),
        case("r", &d.c243_9, Some(rule(b'c', 243, 9, READ)), false),
        case("w", &d.b243_9, Some(rule(b'b', 243, 9, WRITE)), false),
        case("r", &d.null, Some(rule(b'c', 1, 3, READ)), false),
    ]);
    // check on wildcard queries: covered only by a rule as wide.
    assert!(api::check(cg.p(), &rule(b'c', 241, -1, READ)).unwrap());
    assert!(!api::check(cg.p(), &rule(b'c', 240, -1, READ)).unwrap());
    api::allow(cg.p(), &rule(b'a', -1, -1, RWM)).unwrap();
    cg.expect(&[
        case("rw", &d.null, Some(rule(b'c', 1, 3, RW)), true),
        case("rw", &d.c240_2, Some(rule(b'c', 240, 2, RW)), true),
        case("rw", &d.b243_9, Some(rule(b'b', 243, 9, RW)), true),
        (
            format!("mknod:b:240:7:{}", d.nodes.fresh("m2")),
            Some(rule(b'b', 240, 7, rules::MKNOD)),
            true,
        ),
    ]);
    assert!(api::check(cg.p(), &rule(b'a', -1, -1, RWM)).unwrap());
}

/// The program's hints (the table's per-major bytes and ANY_MINOR, format
/// 5's wildcard index): a kind of wildcard rule is seen by the kernel as
/// soon as it is allowed, denying it keeps its hint (harmless: a lookup
/// that finds nothing), and the instructions the library loaded, run on
/// the maps read back from the kernel, decide like the kernel and like
/// check.
#[test]
fn the_program_hints_follow_the_rules() {
    let Some(mount) = privileged() else { return };
    let cg = Scratch::new(&mount);
    let d = Devs::new();
    api::deny_all(cg.p()).unwrap();
    let hints_cover = |cg: &Scratch| {
        vircgroup_v2_devices::testing::kernel_view(cg.p())
            .unwrap()
            .unwrap()
            .hints_cover
    };
    assert!(hints_cover(&cg));
    api::allow(cg.p(), &rule(b'c', 241, -1, READ)).unwrap();
    api::allow(cg.p(), &rule(b'b', -1, 9, WRITE)).unwrap();
    api::allow(cg.p(), &rule(b'c', 240, 1, RW)).unwrap();
    assert!(hints_cover(&cg));
    cg.expect(&[
        case("r", &d.c241_5, Some(rule(b'c', 241, 5, READ)), true),
        case("w", &d.b243_9, Some(rule(b'b', 243, 9, WRITE)), true),
        case("w", &d.c243_9, Some(rule(b'c', 243, 9, WRITE)), false),
        case("rw", &d.c240_1, Some(rule(b'c', 240, 1, RW)), true),
    ]);
    api::deny(cg.p(), &rule(b'c', 241, -1, READ)).unwrap();
    assert!(hints_cover(&cg));
    cg.expect(&[case("r", &d.c241_5, Some(rule(b'c', 241, 5, READ)), false)]);
    let (prog, maps) = vircgroup_v2_devices::testing::snapshot(cg.p())
        .unwrap()
        .unwrap();
    for (ty, t) in [(rules::DEV_BLOCK, b'b'), (rules::DEV_CHAR, b'c')] {
        for (major, minor) in [(241, 5), (243, 9), (240, 1), (240, 2), (0, 0)] {
            for perms in 1..=7 {
                let access = (rules::acc_bits(perms) << 16) | ty;
                let r0 =
                    vircgroup_v2_devices::program::interp::run(&prog, &maps, access, major, minor);
                let r = rule(t, major as i32, minor as i32, perms);
                assert_eq!(r0 == 1, api::check(cg.p(), &r).unwrap(), "{r}");
            }
        }
    }
    api::deny_all(cg.p()).unwrap();
    assert_eq!(cg.list(), "");
    cg.expect(&[case("rw", &d.c240_1, Some(rule(b'c', 240, 1, RW)), false)]);
}

/// In steady state an allow or a deny is the query that checks the held
/// program is still the one attached, and the write: with the table a
/// store to shared memory (no system call), with format 5 one map write
/// and the generation word (looked up to see another writer's change,
/// bumped to announce this one).
#[test]
fn an_allow_or_a_deny_is_one_write_and_the_freshness_check() {
    let Some(mount) = privileged() else { return };
    // The process's beacon exists before the counting (it is made once).
    let _beacon = hold_beacon(&mount);
    let cg = Scratch::new(&mount);
    api::deny_all(cg.p()).unwrap();
    let table = vircgroup_v2_devices::testing::kernel_view(cg.p())
        .unwrap()
        .unwrap()
        .format
        == 6;
    let calls = |f: &dyn Fn()| {
        let before = sys::hook::calls();
        f();
        let after = sys::hook::calls();
        (0..sys::hook::COMMANDS)
            .filter(|&c| after[c] != before[c])
            .map(|c| (c as i32, after[c] - before[c]))
            .collect::<Vec<_>>()
    };
    use sys::cmd::*;
    let (update, delete, wildcard) = if table {
        (
            vec![(PROG_QUERY, 1)],
            vec![(PROG_QUERY, 1)],
            vec![(PROG_QUERY, 1)],
        )
    } else {
        (
            vec![(MAP_LOOKUP_ELEM, 1), (MAP_UPDATE_ELEM, 2), (PROG_QUERY, 1)],
            vec![
                (MAP_LOOKUP_ELEM, 1),
                (MAP_UPDATE_ELEM, 1),
                (MAP_DELETE_ELEM, 1),
                (PROG_QUERY, 1),
            ],
            // The first wildcard of its kind sets its index bit first.
            vec![(MAP_LOOKUP_ELEM, 2), (MAP_UPDATE_ELEM, 3), (PROG_QUERY, 1)],
        )
    };
    for minor in 0..10 {
        assert_eq!(
            calls(&|| api::allow(cg.p(), &rule(b'c', 1, minor, RW)).unwrap()),
            update
        );
    }
    assert_eq!(
        calls(&|| api::allow(cg.p(), &rule(b'c', 1, 3, rules::MKNOD)).unwrap()),
        update
    );
    assert_eq!(
        calls(&|| api::deny(cg.p(), &rule(b'c', 1, 3, READ)).unwrap()),
        update
    );
    assert_eq!(
        calls(&|| api::deny(cg.p(), &rule(b'c', 1, 4, RW)).unwrap()),
        delete
    );
    assert_eq!(
        calls(&|| api::allow(cg.p(), &rule(b'c', 136, -1, RW)).unwrap()),
        wildcard
    );
    assert_eq!(
        calls(&|| api::allow(cg.p(), &rule(b'c', 136, -1, rules::MKNOD)).unwrap()),
        update
    );
    // check, list and state read what the kernel holds after the
    // freshness check (format 5: and the generation word). check and list
    // query the kernel's list of programs for the cgroup, the cgroup's own
    // (to find where each is attached, and again as it is read) and the
    // list again at the end (nothing changed while they read): 4 each.
    let reads = if table {
        vec![(PROG_QUERY, 9)]
    } else {
        vec![(MAP_LOOKUP_ELEM, 3), (PROG_QUERY, 9)]
    };
    assert_eq!(
        calls(&|| {
            api::check(cg.p(), &rule(b'c', 1, 3, RW)).unwrap();
            api::list(cg.p()).unwrap();
            api::state(cg.p()).unwrap();
        }),
        reads
    );
}

#[test]
fn permissions_accumulate_and_deny_removes_bits() {
    let Some(mount) = privileged() else { return };
    let cg = Scratch::new(&mount);
    let d = Devs::new();
    api::allow(cg.p(), &rule(b'c', 240, 1, READ)).unwrap();
    cg.expect(&[
        case("r", &d.c240_1, Some(rule(b'c', 240, 1, READ)), true),
        case("rw", &d.c240_1, Some(rule(b'c', 240, 1, RW)), false),
        case("w", &d.c240_1, Some(rule(b'c', 240, 1, WRITE)), false),
    ]);
    api::allow(cg.p(), &rule(b'c', 240, 1, WRITE)).unwrap();
    assert_eq!(cg.list(), "c 240:1 rw\n");
    assert_eq!(cg.state().count, 1, "re-allowing does not count twice");
    cg.expect(&[case("rw", &d.c240_1, Some(rule(b'c', 240, 1, RW)), true)]);
    api::deny(cg.p(), &rule(b'c', 240, 1, WRITE)).unwrap();
    assert_eq!(cg.list(), "c 240:1 r\n");
    cg.expect(&[
        case("r", &d.c240_1, Some(rule(b'c', 240, 1, READ)), true),
        case("w", &d.c240_1, Some(rule(b'c', 240, 1, WRITE)), false),
    ]);
    api::deny(cg.p(), &rule(b'c', 240, 1, READ)).unwrap();
    assert_eq!(cg.list(), "");
    assert_eq!(cg.state().count, 0);
    cg.expect(&[case("r", &d.c240_1, Some(rule(b'c', 240, 1, READ)), false)]);
    // Denying what is not there changes nothing.
    api::deny(cg.p(), &rule(b'c', 240, 1, RWM)).unwrap();
    assert_eq!(cg.state().count, 0);
}

#[test]
fn char_and_block_rules_on_the_same_numbers_are_independent() {
    let Some(mount) = privileged() else { return };
    let cg = Scratch::new(&mount);
    let d = Devs::new();
    api::allow(cg.p(), &rule(b'c', 1, 3, RW)).unwrap();
    api::allow(cg.p(), &rule(b'b', 1, 3, READ)).unwrap();
    assert_eq!(cg.list(), "b 1:3 r\nc 1:3 rw\n");
    cg.expect(&[
        case("rw", &d.null, Some(rule(b'c', 1, 3, RW)), true),
        case("r", &d.b1_3, Some(rule(b'b', 1, 3, READ)), true),
        case("w", &d.b1_3, Some(rule(b'b', 1, 3, WRITE)), false),
    ]);
    api::deny(cg.p(), &rule(b'b', 1, 3, READ)).unwrap();
    assert_eq!(cg.list(), "c 1:3 rw\n");
    cg.expect(&[
        case("rw", &d.null, Some(rule(b'c', 1, 3, RW)), true),
        case("r", &d.b1_3, Some(rule(b'b', 1, 3, READ)), false),
    ]);
}

#[test]
fn access_f_ok_and_mknod() {
    let Some(mount) = privileged() else { return };
    let cg = Scratch::new(&mount);
    let d = Devs::new();
    api::allow(cg.p(), &rule(b'c', 240, 1, READ)).unwrap();
    api::allow(cg.p(), &rule(b'b', 243, 9, READ)).unwrap();
    let m = |ty: &str, ma: u32, mi: u32, name: &str| {
        format!("mknod:{ty}:{ma}:{mi}:{}", d.nodes.fresh(name))
    };
    cg.expect(&[
        case("f", &d.c240_1, None, true),
        case("f", &d.c240_2, None, false),
        // a block rule does not let the char device with its numbers be seen
        case("f", &d.c243_9, None, false),
        case("f", &d.b243_9, None, true),
        (
            m("c", 240, 1, "n1"),
            Some(rule(b'c', 240, 1, rules::MKNOD)),
            false,
        ),
    ]);
    api::allow(cg.p(), &rule(b'c', 240, 1, rules::MKNOD)).unwrap();
    cg.expect(&[
        (
            m("c", 240, 1, "n2"),
            Some(rule(b'c', 240, 1, rules::MKNOD)),
            true,
        ),
        (
            m("b", 240, 1, "n3"),
            Some(rule(b'b', 240, 1, rules::MKNOD)),
            false,
        ),
    ]);
}

#[test]
fn device_paths() {
    let Some(mount) = privileged() else { return };
    let cg = Scratch::new(&mount);
    let d = Devs::new();
    api::deny_all(cg.p()).unwrap();
    let rule_of = |p: &str| api::device_rule(p, RW).unwrap().unwrap();
    api::allow(cg.p(), &rule_of(&d.c241_5)).unwrap();
    assert_eq!(cg.list(), "c 241:5 rw\n");
    assert_eq!(api::device_rule("/proc/self/status", RW).unwrap(), None);
    assert_eq!(
        api::device_rule("/nonexistent/dev", RW)
            .unwrap_err()
            .errno(),
        libc::ENOENT
    );
    cg.expect(&[case("rw", &d.c241_5, None, true)]);
}

#[test]
fn growth_keeps_every_rule_and_one_program() {
    let Some(mount) = privileged() else { return };
    let cg = Scratch::new(&mount);
    let nodes = Nodes::new();
    api::deny_all(cg.p()).unwrap();
    assert_eq!(cg.state().max, 64);
    // Device 0:0 first (key 0): libvirt's walk from key 0 would skip it.
    api::allow(cg.p(), &rule(b'b', 0, 0, rules::MKNOD)).unwrap();
    let mut cases = Vec::new();
    for i in 0..300 {
        api::allow(cg.p(), &rule(b'c', 240, i, READ)).unwrap();
        let node = nodes.node(&format!("n{i}"), 'c', 240, i as u64);
        cases.push(case("r", &node, Some(rule(b'c', 240, i, READ)), true));
    }
    let state = cg.state();
    assert_eq!(state.count, 301);
    assert_eq!(state.max, 512);
    assert_eq!(cg.attached().len(), 1, "exactly one program after growing");
    let other = nodes.node("other", 'c', 240, 300);
    cases.push(case("r", &other, Some(rule(b'c', 240, 300, READ)), false));
    cases.push(case(
        "w",
        &nodes.node("w0", 'c', 240, 0),
        Some(rule(b'c', 240, 0, WRITE)),
        false,
    ));
    cases.push((
        format!("mknod:b:0:0:{}", nodes.fresh("zero")),
        Some(rule(b'b', 0, 0, rules::MKNOD)),
        true,
    ));
    cg.expect(&cases);
    assert_eq!(cg.list().lines().count(), 301);
    assert!(cg.list().starts_with("b 0:0 m\n"));
}

/// Process A (this test) configures and forgets; process B (this test
/// binary again, running `restart_second_process`) detects and adds a rule.
#[test]
fn restart_detects_the_program_in_a_new_process() {
    let Some(mount) = privileged() else { return };
    let cg = Scratch::new(&mount);
    let d = Devs::new();
    for i in 0..70 {
        api::allow(cg.p(), &rule(b'c', 241, i, READ)).unwrap();
    }
    api::allow(cg.p(), &rule(b'c', 1, 3, RW)).unwrap();
    let before = cg.list();
    api::remove_prog(cg.p()).unwrap();
    assert_eq!(cg.state().mapfd, -1);
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "restart_second_process",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("VCG2_RESTART_CGROUP", cg.p())
        .env("VCG2_RESTART_LIST", &before)
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("1 passed"),
        "second process failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Back in A: detect again and see B's rule, enforced.
    api::detect_prog(cg.p()).unwrap();
    assert_eq!(cg.state().count, 72);
    assert_eq!(cg.attached().len(), 1);
    cg.expect(&[
        case("r", &d.c240_2, Some(rule(b'c', 240, 2, READ)), true),
        case("rw", &d.null, Some(rule(b'c', 1, 3, RW)), true),
        case("r", &d.c241_5, Some(rule(b'c', 241, 5, READ)), true),
        case("r", &d.c240_1, Some(rule(b'c', 240, 1, READ)), false),
    ]);
}

#[test]
#[ignore = "run by restart_detects_the_program_in_a_new_process"]
fn restart_second_process() {
    let path = std::env::var("VCG2_RESTART_CGROUP").expect("run by the restart test");
    let before = std::env::var("VCG2_RESTART_LIST").unwrap();
    assert_eq!(
        api::state(&path).unwrap().mapfd,
        -1,
        "a fresh process holds nothing"
    );
    api::detect_prog(&path).unwrap();
    let s = api::state(&path).unwrap();
    assert_eq!((s.count, s.max), (71, 128));
    assert_eq!(api::list(&path).unwrap(), before);
    api::allow(&path, &rule(b'c', 240, 2, READ)).unwrap();
    assert_eq!(api::state(&path).unwrap().count, 72);
}

#[test]
fn a_cgroup_set_up_by_libvirt_is_adopted_and_converted() {
    let Some(mount) = privileged() else { return };
    let cg = Scratch::new(&mount);
    let d = Devs::new();
    let libvirt_id = attach_like_libvirt(
        &cg.path,
        65,
        &[
            (b'c', 1, 3, RW),
            (b'c', 136, -1, RW),
            (b'b', 0, 0, rules::MKNOD),
            (b'a', 240, 1, READ),
        ],
    );
    assert_eq!(cg.attached(), vec![libvirt_id]);
    api::detect_prog(cg.p()).unwrap();
    let ids = cg.attached();
    assert_eq!(ids.len(), 1);
    assert_ne!(ids[0], libvirt_id, "our program replaced libvirt's");
    let s = cg.state();
    assert_eq!((s.count, s.max), (4, 65));
    assert_eq!(
        cg.list(),
        "b 0:0 m\nb 240:1 r\nc 1:3 rw\nc 136:* rw\nc 240:1 r\n"
    );
    cg.expect(&[
        case("rw", &d.null, Some(rule(b'c', 1, 3, RW)), true),
        case("r", &d.c240_1, Some(rule(b'c', 240, 1, READ)), true),
        case("r", &d.b240_1, Some(rule(b'b', 240, 1, READ)), true),
        case("r", &d.c240_2, Some(rule(b'c', 240, 2, READ)), false),
        (
            format!("mknod:b:0:0:{}", d.nodes.fresh("z")),
            Some(rule(b'b', 0, 0, rules::MKNOD)),
            true,
        ),
    ]);
    // And now the block rule no longer wipes the char one.
    api::allow(cg.p(), &rule(b'b', 1, 3, READ)).unwrap();
    cg.expect(&[case("rw", &d.null, Some(rule(b'c', 1, 3, RW)), true)]);
}

#[test]
fn a_foreign_program_is_never_adopted_nor_replaced() {
    let Some(mount) = privileged() else { return };
    let cg = Scratch::new(&mount);
    let foreign = foreign_program(None);
    let cgfd = std::fs::File::open(&cg.path).unwrap();
    sys::prog_attach(
        cgfd.as_fd(),
        foreign.as_fd(),
        sys::BPF_CGROUP_DEVICE,
        0,
        None,
    )
    .unwrap();
    let ids = cg.attached();
    api::detect_prog(cg.p()).unwrap();
    assert_eq!(cg.state().mapfd, -1);
    let err = api::allow(cg.p(), &rule(b'c', 1, 3, RW)).unwrap_err();
    assert_eq!(err.errno(), libc::EBUSY, "{err}");
    assert_eq!(cg.attached(), ids);
    // Its rules cannot be read (check and explain run it instead).
    assert_eq!(api::list(cg.p()).unwrap_err().errno(), libc::EOPNOTSUPP);
}

#[test]
fn concurrent_calls_on_one_cgroup_are_serialized() {
    let Some(mount) = privileged() else { return };
    let cg = Scratch::new(&mount);
    api::deny_all(cg.p()).unwrap();
    std::thread::scope(|s| {
        for t in 0..8 {
            let path = cg.p();
            s.spawn(move || {
                for i in 0..40 {
                    api::allow(path, &rule(b'c', 240 + t, i, READ)).unwrap();
                    // Some re-allows, which must not count twice.
                    api::allow(path, &rule(b'c', 240 + t, i / 2, READ)).unwrap();
                }
            });
        }
    });
    let s = cg.state();
    assert_eq!((s.count, s.max), (320, 512));
    assert_eq!(cg.list().lines().count(), 320);
    assert_eq!(cg.attached().len(), 1);
}

#[test]
fn spellings_of_one_path_share_one_state() {
    let Some(mount) = privileged() else { return };
    let cg = Scratch::new(&mount);
    let other = Scratch::new(&mount);
    let spellings = [
        cg.p().to_string(),
        format!("{}/", cg.p()),
        cg.p().replacen('/', "//", 2),
        format!(
            "{}/../{}",
            cg.p(),
            cg.path.file_name().unwrap().to_str().unwrap()
        ),
    ];
    for (i, p) in spellings.iter().enumerate() {
        api::allow(p, &rule(b'c', 1, i as i32, RW)).unwrap();
    }
    for p in &spellings {
        assert_eq!(api::state(p).unwrap().count, spellings.len());
    }
    let dir = Nodes::new();
    let link = dir.dir.join("cg");
    std::os::unix::fs::symlink(&cg.path, &link).unwrap();
    let l = link.to_str().unwrap();
    assert_eq!(api::state(l).unwrap().count, spellings.len());
    api::allow(l, &rule(b'c', 2, 2, RW)).unwrap();
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(&other.path, &link).unwrap();
    assert_eq!(
        api::state(l).unwrap().mapfd,
        -1,
        "now names the other cgroup"
    );
    api::allow(l, &rule(b'c', 3, 3, RW)).unwrap();
    assert_eq!(other.list(), "c 3:3 rw\n");
    assert_eq!(cg.state().count, spellings.len() + 1);
}

#[test]
fn a_program_detached_by_someone_else_is_not_trusted() {
    let Some(mount) = privileged() else { return };
    let cg = Scratch::new(&mount);
    let d = Devs::new();
    api::allow(cg.p(), &rule(b'c', 1, 3, RW)).unwrap();
    let held = cg.state();
    let cgfd = std::fs::File::open(&cg.path).unwrap();
    // SAFETY: the fd is the library's and stays open during the call.
    let prog = unsafe { std::os::fd::BorrowedFd::borrow_raw(held.progfd) };
    sys::prog_detach(cgfd.as_fd(), prog, sys::BPF_CGROUP_DEVICE).unwrap();
    assert_eq!(cg.state().mapfd, -1);
    api::allow(cg.p(), &rule(b'c', 240, 1, READ)).unwrap();
    assert_eq!(cg.list(), "c 240:1 r\n");
    cg.expect(&[case("r", &d.null, Some(rule(b'c', 1, 3, READ)), false)]);
}

#[test]
fn detach_prog_leaves_the_cgroup_unrestricted() {
    let Some(mount) = privileged() else { return };
    let cg = Scratch::new(&mount);
    let d = Devs::new();
    api::deny_all(cg.p()).unwrap();
    cg.expect(&[case("r", &d.null, Some(rule(b'c', 1, 3, READ)), false)]);
    api::detach_prog(cg.p()).unwrap();
    assert!(cg.attached().is_empty());
    assert_eq!(cg.state().mapfd, -1);
    cg.expect(&[case("r", &d.null, Some(rule(b'c', 1, 3, READ)), true)]);
    // Nothing attached: nothing to do.
    api::detach_prog(cg.p()).unwrap();
}

/// A daemon restarted under a running VM that calls create_prog without
/// detect_prog first: the VM's rules, set by another process,
/// stay; the program is adopted, not replaced.
#[test]
fn create_prog_after_a_restart_keeps_the_running_vms_rules() {
    let Some(mount) = privileged() else { return };
    let cg = Scratch::new(&mount);
    let d = Devs::new();
    tool(&["deny", cg.p(), "a"]);
    tool(&["allow", cg.p(), "c 1:3 rw"]);
    let before = cg.attached();
    api::create_prog(cg.p()).unwrap();
    assert_eq!(cg.attached(), before, "adopted, not replaced");
    assert_eq!(cg.list(), "c 1:3 rw\n");
    assert_eq!(cg.state().count, 1);
    cg.expect(&[case("rw", &d.null, Some(rule(b'c', 1, 3, RW)), true)]);
}
