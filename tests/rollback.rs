// SPDX-License-Identifier: LGPL-2.1-or-later
//! `vircgroup-devices to-libvirt` against the real kernel: a cgroup of this
//! library handed back to libvirt's own program and map (src/rollback.rs),
//! and what stock libvirt then does with it. Runs as root; under CI=true a
//! test that cannot run fails.

mod common;

use common::*;
use std::os::fd::AsFd;
use std::process::Command;
use vircgroup_v2_devices::api;
use vircgroup_v2_devices::rules::{get_key, get_perms, READ, RW, RWM};
use vircgroup_v2_devices::sys;

const TOOL: &str = env!("CARGO_BIN_EXE_vircgroup-devices");

/// Runs the tool: (exit status, stdout, stderr).
fn tool(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(TOOL)
        .args(args)
        .output()
        .expect("run the tool");
    (
        out.status.code().expect("exited"),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn ok(args: &[&str]) -> String {
    let (code, out, err) = tool(args);
    assert_eq!(code, 0, "{args:?}: {out}{err}");
    out
}

/// The one map of program `id` (libvirt's program has exactly one) and
/// its entries, as stock libvirt's DetectProg finds them.
fn libvirt_map(id: u32) -> (std::os::fd::OwnedFd, u32, Vec<(u64, u32)>) {
    let prog = sys::prog_get_fd_by_id(id).unwrap();
    let info = sys::prog_info(prog.as_fd()).unwrap();
    assert_eq!(info.map_ids.len(), 1, "libvirt's program has one map");
    let map = sys::map_get_fd_by_id(info.map_ids[0]).unwrap();
    let max = sys::map_info(map.as_fd()).unwrap().max_entries;
    let mut entries = sys::map_entries(map.as_fd()).unwrap();
    entries.sort();
    (map, max, entries)
}

#[test]
fn the_rules_move_into_libvirts_encoding_and_stock_libvirt_can_add_more() {
    let Some(mount) = privileged() else { return };
    let cg = Scratch::new(&mount);
    ok(&["deny", cg.p(), "a"]);
    ok(&[
        "allow",
        cg.p(),
        "c 1:3 rw",
        "c 136:* rw",
        "b 7:* r",
        "c 8:0 rwm",
        "b 8:0 rwm",
    ]);
    let before = ok(&["list", cg.p()]);
    let ours = cg.attached();

    let out = ok(&["to-libvirt", cg.p()]);
    assert!(out.contains("libvirt's device program"), "{out}");
    assert!(out.contains("4 rules, map of 64"), "{out}");
    let now = cg.attached();
    assert_eq!(now.len(), 1, "one program replaced by one");
    assert_ne!(now, ours);
    let seen = api::inspect(cg.p()).unwrap();
    assert!(seen.libvirt, "the library recognises libvirt's program");
    assert_eq!(ok(&["list", cg.p()]), before, "same rules");

    let (map, max, entries) = libvirt_map(now[0]);
    assert_eq!(max, 64, "libvirt's initial capacity");
    let mut expected = vec![
        (get_key(1, 3), get_perms(RW, b'c')),
        (get_key(136, -1), get_perms(RW, b'c')),
        (get_key(7, -1), get_perms(READ, b'b')),
        (get_key(8, 0), get_perms(RWM, b'a')),
    ];
    expected.sort();
    assert_eq!(entries, expected, "libvirt's encoding");
    assert!(cg.allowed("rw:/dev/null"));
    assert!(!cg.allowed("r:/dev/zero"));

    // Stock libvirt's hot-plug: its value written into the first map.
    sys::map_update(map.as_fd(), get_key(1, 5), get_perms(RW, b'c')).unwrap();
    assert!(cg.allowed("r:/dev/zero"), "a rule stock libvirt adds works");

    let (code, _, err) = tool(&["to-libvirt", cg.p()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("already has libvirt's device program"),
        "{err}"
    );
}

#[test]
fn a_lossy_conversion_is_refused_naming_the_rules_and_changes_nothing() {
    let Some(mount) = privileged() else { return };
    let cg = Scratch::new(&mount);
    ok(&["deny", cg.p(), "a"]);
    ok(&["allow", cg.p(), "c 1:3 rw", "b 1:3 r"]);
    let (before, ids) = (ok(&["list", cg.p()]), cg.attached());
    let (code, out, err) = tool(&["to-libvirt", cg.p()]);
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("'b 1:3 r' and 'c 1:3 rw'"), "{err}");
    assert_eq!((ok(&["list", cg.p()]), cg.attached()), (before, ids));
    assert!(cg.allowed("rw:/dev/null"));
}

#[test]
fn beside_allow_multi_programs_only_its_own_is_replaced() {
    let Some(mount) = privileged() else { return };
    let cg = Scratch::new(&mount);
    let foreign = foreign_program(None);
    attach_raw(&cg.path, &foreign, sys::BPF_F_ALLOW_MULTI);
    ok(&["deny", cg.p(), "a"]);
    ok(&["allow", cg.p(), "c 1:3 rw"]);
    let ids = cg.attached();
    assert_eq!(ids.len(), 2);
    ok(&["to-libvirt", cg.p()]);
    let now = cg.attached();
    assert_eq!(now.len(), 2, "{now:?}");
    assert!(now.contains(&prog_id(&foreign)), "the foreign one stays");
    assert!(api::inspect(cg.p()).unwrap().libvirt);
    assert!(cg.allowed("rw:/dev/null"));
    assert!(!cg.allowed("r:/dev/zero"));
}

#[test]
fn nothing_to_convert_is_an_error() {
    let Some(mount) = privileged() else { return };
    let cg = Scratch::new(&mount);
    let (code, _, err) = tool(&["to-libvirt", cg.p()]);
    assert_eq!(code, 1);
    assert!(err.contains("no device program of this library"), "{err}");
    let (code, _, err) = tool(&["to-libvirt"]);
    assert_eq!(code, 2, "{err}");
    assert!(cg.attached().is_empty());
}
