// SPDX-License-Identifier: LGPL-2.1-or-later
//! Upgrades of the library itself: each earlier format, built from this
//! repository's history, sets up a cgroup that this build then adopts.
use crate::common::*;
use ::vircgroup_v2_devices::{api, program, sys};
use std::ffi::{c_char, c_int, CString};
use std::path::PathBuf;
use std::process::Command;

/// (format, path of that build's shared library), built when missing.
fn old_builds() -> Vec<(u32, PathBuf)> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/old-builds.sh");
    let out = Command::new(script)
        .arg(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run scripts/old-builds.sh");
    assert!(
        out.status.success(),
        "old-builds.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let builds: Vec<(u32, PathBuf)> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (f, p) = l.split_once(' ').unwrap();
            (f.parse().unwrap(), PathBuf::from(p))
        })
        .collect();
    assert_eq!(builds.len(), 5, "formats 1 to 4, and 6 as it was laid out");
    builds
}

/// What an old build is told to set up: deny-all, then these, through its
/// C API (which has not changed since the first commit).
const OLD_RULES: [(u8, i32, i32, i32); 5] = [
    (b'c', 1, 3, 3),
    (b'c', 136, -1, 3),
    (b'b', 8, -1, 1),
    (b'c', 240, 1, 1),
    (b'b', -1, 7, 4),
];

#[test]
fn every_earlier_format_is_adopted_without_a_gap() {
    let Some(mount) = privileged() else { return };
    let nodes = Nodes::new();
    let null = nodes.node("null", 'c', 1, 3);
    let zero = nodes.node("zero", 'c', 1, 5);
    let pts = nodes.node("pts", 'c', 136, 4);
    let sda = nodes.node("sda", 'b', 8, 0);
    let c241 = nodes.node("c241", 'c', 241, 1);
    for (format, so) in old_builds() {
        // Today's format is a table (Linux 5.5): a kernel emulated as older
        // would never hold one.
        let current = format == program::table::FORMAT;
        if current && sys::hook::emulated().is_some_and(|k| k < sys::Since(5, 5)) {
            eprintln!("format {format}: skipped: the emulated kernel has no table");
            continue;
        }
        let cg = Scratch::new(&mount);
        let status = Command::new(std::env::current_exe().unwrap())
            .args([
                "releases::scenario_old_client",
                "--exact",
                "--ignored",
                "--nocapture",
            ])
            .env("VCG2_OLD_SO", &so)
            .env("VCG2_OLD_CGROUP", cg.p())
            .status()
            .unwrap();
        assert!(
            status.success(),
            "format {format}: the old build's process failed"
        );
        let old = vircgroup_v2_devices::testing::kernel_view(cg.p())
            .unwrap()
            .unwrap_or_else(|| panic!("format {format}: the old program is not recognised"));
        assert_eq!(old.format, format, "recognised as its format");
        let want = "b 8:* r\nb *:7 m\nc 1:3 rw\nc 136:* rw\nc 240:1 r\n";
        let sorted = |text: &str| {
            let mut l: Vec<&str> = text.lines().collect();
            l.sort();
            l.join("\n")
        };
        assert_eq!(
            sorted(&cg.list()),
            sorted(want),
            "format {format}: list reads it"
        );
        // Enforced by the old program, then during and after adoption.
        let accesses = [
            format!("rw:{null}"),
            format!("rw:{pts}"),
            format!("r:{sda}"),
            format!("r:{zero}"),
            format!("w:{sda}"),
            format!("r:{c241}"),
        ];
        let probe = ProbeLoop::start(&cg.path, &accesses);
        std::thread::sleep(std::time::Duration::from_millis(100));
        api::detect_prog(cg.p()).unwrap();
        let new = vircgroup_v2_devices::testing::kernel_view(cg.p())
            .unwrap()
            .unwrap();
        assert!(
            new.format >= 5,
            "format {format}: adopted as {}",
            new.format
        );
        if current {
            // Its table is read as it is laid out, and kept.
            assert_eq!(new.program.id, old.program.id, "adopted in place");
        } else {
            assert_ne!(new.program.id, old.program.id, "the program was replaced");
        }
        assert_eq!(new.rules, old.rules, "format {format}: every rule kept");
        assert_eq!(cg.attached(), vec![new.program.id], "in one step, alone");
        // A change works at once.
        api::allow(cg.p(), &rule(b'c', 241, 1, 1)).unwrap();
        let counts = probe.stop();
        for (i, access) in accesses.iter().enumerate() {
            match i {
                0..=2 => assert_eq!(counts.denied(i), 0, "format {format}: {access} denied"),
                3 | 4 => assert_eq!(counts.passed(i), 0, "format {format}: {access} passed"),
                _ => {}
            }
        }
        cg.expect(&[(format!("r:{c241}"), None, true)]);
        eprintln!(
            "format {format}: program {} adopted as format {} ({} rules), {} probe rounds",
            old.program.id,
            new.format,
            new.rules.len(),
            counts.iterations
        );
    }
}

type DenyAll = unsafe extern "C" fn(*const c_char) -> c_int;
type Allow = unsafe extern "C" fn(*const c_char, c_char, c_int, c_int, c_int) -> c_int;

/// In a process of its own: the old build, loaded with dlopen, sets up the
/// cgroup through its C API.
#[test]
#[ignore = "run by every_earlier_format_is_adopted_without_a_gap"]
fn scenario_old_client() {
    let so = CString::new(std::env::var("VCG2_OLD_SO").unwrap()).unwrap();
    let cg = CString::new(std::env::var("VCG2_OLD_CGROUP").unwrap()).unwrap();
    // SAFETY: a shared library built from this repository's history, its
    // functions looked up by the names and types its header declared.
    unsafe {
        let lib = libc::dlopen(so.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
        assert!(!lib.is_null(), "dlopen {so:?}");
        let sym = |name: &std::ffi::CStr| {
            let f = libc::dlsym(lib, name.as_ptr());
            assert!(!f.is_null(), "{name:?}");
            f
        };
        let deny_all: DenyAll = std::mem::transmute(sym(c"vircgroup_v2_deny_all_devices"));
        let allow: Allow = std::mem::transmute(sym(c"vircgroup_v2_allow_device"));
        assert_eq!(deny_all(cg.as_ptr()), 0);
        for (t, ma, mi, p) in OLD_RULES {
            assert_eq!(allow(cg.as_ptr(), t as c_char, ma, mi, p), 0);
        }
    }
}
