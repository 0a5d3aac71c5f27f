// SPDX-License-Identifier: LGPL-2.1-or-later
//! Scenario 8: unprivileged callers get EPERM naming the missing privilege.

use crate::common::*;
use crate::helpers::*;
use ::vircgroup_v2_devices::api;
use ::vircgroup_v2_devices::capi::*;
use ::vircgroup_v2_devices::rules::{READ, RW};
use ::vircgroup_v2_devices::sys::{self, hook};
use std::collections::HashMap;

/// Capability numbers (linux/capability.h).
const CAP_NET_ADMIN: u32 = 12;
const CAP_BPF: u32 = 39;

/// Keeps only `caps` (effective and permitted) for the calling thread,
/// which is where the library makes its calls.
fn keep_only_caps(caps: &[u32]) {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut header = Header {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    for &cap in caps {
        let d = &mut data[(cap / 32) as usize];
        d.effective |= 1 << (cap % 32);
        d.permitted |= 1 << (cap % 32);
    }
    // SAFETY: capset(2) reads a version-3 header and two data structs,
    // both live for the call.
    let ret = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_mut_ptr()) };
    assert_eq!(ret, 0, "capset: {}", std::io::Error::last_os_error());
}

/// The unprivileged side of scenario 8, run in its own process (the
/// privileges it drops are gone for good): drops them as VCG2_UNPRIV_MODE
/// says, calls the library on VCG2_UNPRIV_FRESH (a cgroup with no program)
/// and VCG2_UNPRIV_HELD (one with the library's program) and prints one
/// line per call: `RESULT name ret errno message`.
#[test]
#[ignore = "run by an_unprivileged_caller_gets_eperm_naming_the_privilege"]
fn unprivileged_child() {
    let mode = std::env::var("VCG2_UNPRIV_MODE").expect("run by the unprivileged test");
    let fresh = c(&std::env::var("VCG2_UNPRIV_FRESH").unwrap());
    let held = c(&std::env::var("VCG2_UNPRIV_HELD").unwrap());
    match mode.as_str() {
        "nobody" => become_nobody(),
        "net_admin" => keep_only_caps(&[CAP_NET_ADMIN]),
        "bpf_net_admin" => keep_only_caps(&[CAP_BPF, CAP_NET_ADMIN]),
        _ => panic!("mode {mode}"),
    }
    let report = |name: &str, ret: i32| {
        let (e, msg) = if ret < 0 {
            (errno(), last_error())
        } else {
            (0, String::new())
        };
        println!("RESULT\t{name}\t{ret}\t{e}\t{msg}");
    };
    // SAFETY (all calls): valid C strings.
    report("detect_prog held", unsafe {
        vircgroup_v2_devices_detect_prog(held.as_ptr())
    });
    report("allow held", allow_c(&held, b'c', 1, 5, READ));
    report("allow fresh", allow_c(&fresh, b'c', 1, 3, RW));
    report("deny_all fresh", unsafe {
        vircgroup_v2_deny_all_devices(fresh.as_ptr())
    });
}

struct Call {
    ret: i32,
    errno: i32,
    msg: String,
}

fn unprivileged_run(mode: &str, fresh: &Scratch, held: &Scratch) -> HashMap<String, Call> {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "unprivileged::unprivileged_child",
            "--ignored",
            "--nocapture",
        ])
        .args(["--test-threads=1"])
        .env("VCG2_UNPRIV_MODE", mode)
        .env("VCG2_UNPRIV_FRESH", fresh.p())
        .env("VCG2_UNPRIV_HELD", held.p())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("unprivileged, {mode}:");
    for l in stdout.lines().filter_map(|l| l.split_once("RESULT\t")) {
        eprintln!("  {}", l.1);
    }
    assert!(
        out.status.success(),
        "{mode}: child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        // libtest may print the test's name on the same line first.
        .filter_map(|l| l.split_once("RESULT\t").map(|(_, r)| r))
        .map(|l| {
            let f: Vec<&str> = l.splitn(4, '\t').collect();
            let call = Call {
                ret: f[1].parse().unwrap(),
                errno: f[2].parse().unwrap(),
                msg: f[3].to_string(),
            };
            (f[0].to_string(), call)
        })
        .collect()
}

/// Scenario 8: a caller without CAP_SYS_ADMIN/CAP_BPF, or running as
/// nobody, gets -1 with EPERM and a message naming the missing privilege;
/// a failed map creation mentions RLIMIT_MEMLOCK; nothing changes. With
/// CAP_BPF and CAP_NET_ADMIN only, a program can be created, but one
/// attached by another process cannot be adopted (that takes
/// CAP_SYS_ADMIN).
#[test]
fn an_unprivileged_caller_gets_eperm_naming_the_privilege() {
    let Some(mount) = privileged() else { return };
    let _s = shared();
    let devs = Devs::new();
    let held = Scratch::new(&mount);
    api::deny_all(held.p()).unwrap();
    api::allow(held.p(), &rule(b'c', 1, 3, RW)).unwrap();
    let held_ids = held.attached();
    let eperm = |calls: &HashMap<String, Call>, name: &str, words: &[&str]| {
        let call = &calls[name];
        assert_eq!(
            (call.ret, call.errno),
            (-1, libc::EPERM),
            "{name}: {}",
            call.msg
        );
        for w in words {
            assert!(
                call.msg.contains(w),
                "{name}: {:?} does not name {w}",
                call.msg
            );
        }
    };

    // nobody: the writers' lock (cgroup.kill, or a file in a root-only
    // directory before Linux 5.14), which the calls that may change the
    // program take first, cannot be opened; deny_all, which makes its map
    // first, cannot make it.
    let fresh = Scratch::new(&mount);
    let calls = unprivileged_run("nobody", &fresh, &held);
    for name in ["detect_prog held", "allow held", "allow fresh"] {
        eperm(
            &calls,
            name,
            &["writers' lock", "CAP_NET_ADMIN", "CAP_SYS_ADMIN"],
        );
    }
    eperm(&calls, "deny_all fresh", &["CAP_SYS_ADMIN"]);
    assert!(fresh.attached().is_empty(), "nobody attached nothing");

    // root with CAP_NET_ADMIN only: the query passes, the map cannot be
    // made (kernel.unprivileged_bpf_disabled) or, where unprivileged BPF
    // is allowed, the program cannot be loaded; the program attached by
    // another process cannot be opened. Some kernels (Debian's 5.10) want
    // CAP_BPF or CAP_SYS_ADMIN for any bpf(2) command, the query too: then
    // every call says so.
    let fresh = Scratch::new(&mount);
    let calls = unprivileged_run("net_admin", &fresh, &held);
    let query_kept_to_bpf_caps = calls["allow fresh"].msg.contains("BPF_PROG_QUERY");
    let query_refused = |calls: &HashMap<String, Call>| {
        for name in [
            "detect_prog held",
            "allow held",
            "allow fresh",
            "deny_all fresh",
        ] {
            eperm(calls, name, &["BPF_PROG_QUERY", "CAP_SYS_ADMIN"]);
        }
    };
    if query_kept_to_bpf_caps {
        query_refused(&calls);
    } else {
        for name in ["allow fresh", "deny_all fresh"] {
            eperm(&calls, name, &["CAP_BPF"]);
            if calls[name].msg.contains("BPF_MAP_CREATE") {
                eperm(&calls, name, &["RLIMIT_MEMLOCK"]);
            }
        }
        for name in ["detect_prog held", "allow held"] {
            eperm(&calls, name, &["BPF_PROG_GET_FD_BY_ID", "CAP_SYS_ADMIN"]);
        }
    }
    assert!(fresh.attached().is_empty());

    // CAP_BPF and CAP_NET_ADMIN: enough to create and attach, not to adopt.
    let fresh = Scratch::new(&mount);
    let calls = unprivileged_run("bpf_net_admin", &fresh, &held);
    // Those kernels let CAP_BPF query (Debian's 5.10 does).
    if calls["allow fresh"].msg.contains("BPF_PROG_QUERY") {
        query_refused(&calls);
        assert!(fresh.attached().is_empty());
    } else {
        for name in ["detect_prog held", "allow held"] {
            eperm(&calls, name, &["BPF_PROG_GET_FD_BY_ID", "CAP_SYS_ADMIN"]);
        }
        for name in ["allow fresh", "deny_all fresh"] {
            assert_eq!(calls[name].ret, 0, "{name}: {}", calls[name].msg);
        }
        assert_eq!(fresh.attached().len(), 1);
        assert_enforced(
            &fresh,
            &[(format!("rw:{}", devs.null), false)],
            "deny_all by the child",
        );
    }

    // Nothing of the held cgroup changed.
    assert_eq!(held.attached(), held_ids);
    assert_eq!(held.list(), "c 1:3 rw\n");

    // A map creation that fails for lack of memory, or of privilege, names
    // RLIMIT_MEMLOCK (made to fail here: the limit does not apply to this
    // kernel's maps).
    let cg = Scratch::new(&mount);
    let p = c(cg.p());
    for e in [libc::ENOMEM, libc::EPERM] {
        // Lasting: the one retry after raising RLIMIT_MEMLOCK fails too.
        hook::fail_from(Some(sys::cmd::MAP_CREATE), 0, e);
        // SAFETY: valid C string.
        let ret = unsafe { vircgroup_v2_devices_create_prog(p.as_ptr()) };
        let (got, msg) = (errno(), last_error());
        hook::disarm();
        assert_eq!((ret, got), (-1, e), "{msg}");
        assert!(
            msg.contains("BPF_MAP_CREATE") && msg.contains("RLIMIT_MEMLOCK"),
            "{msg}"
        );
    }
    assert!(cg.attached().is_empty());
}
