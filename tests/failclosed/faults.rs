// SPDX-License-Identifier: LGPL-2.1-or-later
//! Scenario 4: a fault at every bpf(2) call of every operation changes nothing.

use crate::common::*;
use crate::helpers::*;
use ::vircgroup_v2_devices::api;
use ::vircgroup_v2_devices::capi::*;
use ::vircgroup_v2_devices::rules::{Rule, READ, RW};
use ::vircgroup_v2_devices::sys::{self, hook};
use std::ffi::CStr;
use std::os::fd::{AsFd, IntoRawFd, OwnedFd};
use std::path::Path;
use std::time::Instant;

/// Where a fault trial starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Start {
    /// No program: every device allowed.
    Fresh,
    /// deny_all, then `c 1:3 rw` and `c 136:* rw`.
    Base,
    /// Base, then remove_prog: the program attached, nothing held (a
    /// restarted daemon).
    BaseForgotten,
    /// Base plus `c 500:0 r` and `c 500:1 r` in a map of 4 (attach_prog):
    /// the next new rule grows it.
    Full,
    /// Full, then remove_prog.
    FullForgotten,
    /// libvirt's program and map (64 entries) with `c 1:3 rw`, `c 136:* rw`.
    Libvirt,
    /// The same in a map of 2: full.
    LibvirtFull,
}

impl Start {
    fn unrestricted(self) -> bool {
        self == Start::Fresh
    }
}

/// The rules of Full, in the library's encoding.
fn full_rules() -> Vec<Rule> {
    vec![
        rule(b'c', 1, 3, RW),
        rule(b'c', 136, -1, RW),
        rule(b'c', 500, 0, READ),
        rule(b'c', 500, 1, READ),
    ]
}

/// A hash map as attach_prog takes it, holding `rules`.
fn rule_map(max: u32, rules: &[Rule]) -> OwnedFd {
    let map = sys::map_create(sys::BPF_MAP_TYPE_HASH, 8, 4, max, "test").unwrap();
    for r in rules {
        sys::map_update(map.as_fd(), r.key(), r.value()).unwrap();
    }
    map
}

fn set_up(mount: &Path, start: Start) -> Scratch {
    let cg = Scratch::new(mount);
    let p = c(cg.p());
    let ok = |ret: i32| assert_eq!(ret, 0, "setup {start:?}: {}", last_error());
    match start {
        Start::Fresh => {}
        Start::Base | Start::BaseForgotten => {
            // SAFETY: valid C string.
            ok(unsafe { vircgroup_v2_deny_all_devices(p.as_ptr()) });
            ok(allow_c(&p, b'c', 1, 3, RW));
            ok(allow_c(&p, b'c', 136, -1, RW));
        }
        Start::Full | Start::FullForgotten => {
            let map = rule_map(4, &full_rules());
            // SAFETY: valid C string; the map fd is handed over.
            ok(unsafe { vircgroup_v2_devices_attach_prog(p.as_ptr(), map.into_raw_fd(), 4) });
        }
        Start::Libvirt | Start::LibvirtFull => {
            let max = if start == Start::Libvirt { 64 } else { 2 };
            attach_like_libvirt(&cg.path, max, &[(b'c', 1, 3, RW), (b'c', 136, -1, RW)]);
        }
    }
    if matches!(start, Start::BaseForgotten | Start::FullForgotten) {
        // SAFETY: valid C string.
        ok(unsafe { vircgroup_v2_devices_remove_prog(p.as_ptr()) });
    }
    cg
}

/// One operation of the C ABI run under faults: its name, where it starts,
/// what it needs made before the fault is armed, and the call.
struct Op {
    name: &'static str,
    start: Start,
    pre: fn() -> Option<OwnedFd>,
    run: fn(&CStr, Option<OwnedFd>) -> i32,
}

fn nothing() -> Option<OwnedFd> {
    None
}

/// Every operation that changes a cgroup's program or maps, from each
/// start where it does something different.
fn ops() -> Vec<Op> {
    // SAFETY (every call below): valid C strings; attach_prog gets an fd
    // the closure owns and hands over.
    vec![
        Op {
            name: "create_prog on a fresh cgroup",
            start: Start::Fresh,
            pre: nothing,
            run: |p, _| unsafe { vircgroup_v2_devices_create_prog(p.as_ptr()) },
        },
        Op {
            name: "allow on a fresh cgroup (create, then the rule)",
            start: Start::Fresh,
            pre: nothing,
            run: |p, _| allow_c(p, b'c', 1, 3, RW),
        },
        Op {
            name: "prepare_prog on a full map (grow)",
            start: Start::Full,
            pre: nothing,
            run: |p, _| unsafe { vircgroup_v2_devices_prepare_prog(p.as_ptr()) },
        },
        Op {
            name: "prepare_prog after a restart on a full map (detect, grow)",
            start: Start::FullForgotten,
            pre: nothing,
            run: |p, _| unsafe { vircgroup_v2_devices_prepare_prog(p.as_ptr()) },
        },
        Op {
            name: "allow that grows the map",
            start: Start::Full,
            pre: nothing,
            run: |p, _| allow_c(p, b'c', 241, 1, READ),
        },
        Op {
            name: "allow after a restart that grows the map",
            start: Start::FullForgotten,
            pre: nothing,
            run: |p, _| allow_c(p, b'c', 241, 1, READ),
        },
        Op {
            name: "deny in a full map",
            start: Start::Full,
            pre: nothing,
            run: |p, _| deny_c(p, b'c', 500, 0, READ),
        },
        // A fault at the rule's write leaves the index bit of the first
        // write set: by design (see rules: the index may say more than the
        // map, never less), a lookup that finds nothing. kernel_view
        // compares the programs and the rules, not the index.
        Op {
            name: "allow a new kind of wildcard (index first)",
            start: Start::Base,
            pre: nothing,
            run: |p, _| allow_c(p, b'c', -1, 9, READ),
        },
        Op {
            name: "allow a new major wildcard (index first)",
            start: Start::Base,
            pre: nothing,
            run: |p, _| allow_c(p, b'b', 240, -1, READ),
        },
        Op {
            name: "attach_prog replacing the held program",
            start: Start::Base,
            pre: || {
                Some(rule_map(
                    64,
                    &[rule(b'c', 1, 3, RW), rule(b'c', 240, 1, READ)],
                ))
            },
            run: |p, map| unsafe {
                vircgroup_v2_devices_attach_prog(p.as_ptr(), map.unwrap().into_raw_fd(), 64)
            },
        },
        Op {
            name: "detect_prog after a restart",
            start: Start::BaseForgotten,
            pre: nothing,
            run: |p, _| unsafe { vircgroup_v2_devices_detect_prog(p.as_ptr()) },
        },
        Op {
            name: "detect_prog adopting libvirt's program",
            start: Start::Libvirt,
            pre: nothing,
            run: |p, _| unsafe { vircgroup_v2_devices_detect_prog(p.as_ptr()) },
        },
        Op {
            name: "allow adopting libvirt's program",
            start: Start::Libvirt,
            pre: nothing,
            run: |p, _| allow_c(p, b'c', 241, 1, READ),
        },
        Op {
            name: "allow adopting libvirt's full map (adopt and grow)",
            start: Start::LibvirtFull,
            pre: nothing,
            run: |p, _| allow_c(p, b'c', 241, 1, READ),
        },
        Op {
            name: "deny_all",
            start: Start::Base,
            pre: nothing,
            run: |p, _| unsafe { vircgroup_v2_deny_all_devices(p.as_ptr()) },
        },
        Op {
            name: "deny_all after a restart",
            start: Start::BaseForgotten,
            pre: nothing,
            run: |p, _| unsafe { vircgroup_v2_deny_all_devices(p.as_ptr()) },
        },
        Op {
            name: "detach_prog",
            start: Start::Base,
            pre: nothing,
            run: |p, _| unsafe { vircgroup_v2_devices_detach_prog(p.as_ptr()) },
        },
        Op {
            name: "list after a restart (detect)",
            start: Start::BaseForgotten,
            pre: nothing,
            run: |p, _| unsafe {
                let text = vircgroup_v2_devices_list(p.as_ptr());
                if text.is_null() {
                    return -1;
                }
                libc::free(text.cast());
                0
            },
        },
    ]
}

const ERRNOS: [(i32, &str); 4] = [
    (libc::ENOMEM, "ENOMEM"),
    (libc::EPERM, "EPERM"),
    (libc::EINVAL, "EINVAL"),
    (libc::E2BIG, "E2BIG"),
];

/// Runs `op` on a fresh setup with bpf(2) call `k` failing with `errno`
/// (with every later one too when `lasting`). When the call fails, asserts
/// that it changed nothing and returns None; when it succeeds (a step that
/// retries), returns the command the fault hit.
fn fault_trial(
    mount: &Path,
    devs: &Devs,
    op: &Op,
    k: u64,
    (errno_, name): (i32, &str),
    lasting: bool,
) -> Option<i32> {
    let cg = set_up(mount, op.start);
    let p = c(cg.p());
    let what = format!(
        "{} with {name} at bpf call {k}{}",
        op.name,
        if lasting { " and after" } else { "" }
    );
    let state = get_state(&p);
    let view = kernel_view(cg.p());
    let fds = fd_count();
    let arg = (op.pre)();
    if lasting {
        hook::fail_from(None, k as u32, errno_);
    } else {
        hook::fail(None, k as u32, errno_);
    }
    let ret = (op.run)(&p, arg);
    let (e, msg) = (errno(), last_error());
    let fired = hook::fired();
    hook::disarm();
    let fired = fired.unwrap_or_else(|| panic!("{what}: the fault did not fire (ret {ret})"));
    if ret == 0 {
        return Some(fired);
    }
    let what = format!("{what} ({})", cmd_name(fired));
    assert_eq!(ret, -1, "{what}");
    assert_eq!(e, errno_, "{what}: errno {e}, message {msg:?}");
    assert!(
        msg.contains(cmd_name(fired)),
        "{what}: the message does not name the failing command: {msg:?}"
    );
    let now = fd_count();
    assert_eq!(
        now,
        fds,
        "{what}: {fds} fds before, {now} after: {:#?}",
        fd_targets()
    );
    let after = get_state(&p);
    assert_eq!(
        (after.mapfd, after.progfd, after.count, after.max),
        (state.mapfd, state.progfd, state.count, state.max),
        "{what}: get_state changed; message {msg:?}"
    );
    assert_eq!(
        kernel_view(cg.p()),
        view,
        "{what}: the kernel's programs or rules changed"
    );
    let unrestricted = op.start.unrestricted();
    assert_enforced(
        &cg,
        &[
            (format!("rw:{}", devs.null), true),
            (format!("rw:{}", devs.pts), true),
            (format!("r:{}", devs.zero), unrestricted),
        ],
        &what,
    );
    None
}

/// Scenario 4: for each operation, the bpf(2) calls it makes are counted;
/// then each call in turn fails with each errno on a fresh identical setup.
/// The call must return -1 with that errno and a message naming the
/// command, and leave everything as it was: the programs attached and
/// their rules, what the kernel enforces, get_state, and the fds open.
#[test]
fn a_fault_at_any_bpf_call_changes_nothing() {
    let Some(mount) = privileged() else { return };
    let _x = exclusive();
    let _beacon = hold_beacon(&mount);
    let devs = Devs::new();
    // The kernel tags of the fixed programs (libvirt's, earlier
    // releases') are learnt once per process, at the first detection of
    // one: learn them now so that every run
    // of an operation makes the same calls. (A fault there fails the
    // detection like any other; it is not retried or cached.)
    for start in [Start::BaseForgotten, Start::Libvirt] {
        let cg = set_up(&mount, start);
        api::detect_prog(cg.p()).unwrap();
        drop(cg);
    }
    let mut report = Vec::new();
    let started = Instant::now();
    for op in ops() {
        let cg = set_up(&mount, op.start);
        let p = c(cg.p());
        let arg = (op.pre)();
        let before = hook::total_calls();
        let ret = (op.run)(&p, arg);
        let n = hook::total_calls() - before;
        assert_eq!(ret, 0, "{}: {}", op.name, last_error());
        drop(cg);
        let (mut trials, mut retried) = (0, 0);
        for k in 0..n {
            for e in ERRNOS {
                trials += 1;
                let Some(cmd) = fault_trial(&mount, &devs, &op, k, e, false) else {
                    continue;
                };
                // The steps that get past a single failure by design: a
                // refused PROG_LOAD is retried with the verifier log on, so
                // that the log can be in the error; and an EPERM or ENOMEM
                // of a map creation or load raises RLIMIT_MEMLOCK (once per
                // process) and is retried if the process could raise it
                // (before 5.11 that limit is why).
                // A lasting failure must still fail the call and change
                // nothing.
                let memlock =
                    matches!(e.0, libc::EPERM | libc::ENOMEM) && cmd == sys::cmd::MAP_CREATE;
                assert!(
                    cmd == sys::cmd::PROG_LOAD || memlock,
                    "{} with {} at bpf call {k} ({}): returned 0",
                    op.name,
                    e.1,
                    cmd_name(cmd)
                );
                retried += 1;
                trials += 1;
                assert_eq!(fault_trial(&mount, &devs, &op, k, e, true), None);
            }
        }
        report.push(format!(
            "{}: {n} bpf calls, {trials} faults ({retried} retried past once)",
            op.name
        ));
    }
    eprintln!(
        "fault injection, {:.1}s:\n  {}",
        started.elapsed().as_secs_f64(),
        report.join("\n  ")
    );
}
