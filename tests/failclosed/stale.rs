// SPDX-License-Identifier: LGPL-2.1-or-later
//! Scenario 6: stale state, a cgroup made again at its path or a program
//! swapped in by someone else, is noticed.

use crate::common::*;
use crate::helpers::*;
use ::vircgroup_v2_devices::capi::*;
use ::vircgroup_v2_devices::rules::{READ, RW};
use ::vircgroup_v2_devices::sys;
use std::os::fd::{AsFd, BorrowedFd};

/// Scenario 6a: a cgroup configured, removed and created again at the same
/// path: the next allow attaches a program to the new cgroup (enforced
/// there) and never writes into the orphaned map.
#[test]
fn a_cgroup_created_again_at_the_same_path_gets_its_own_program() {
    let Some(mount) = privileged() else { return };
    let _s = shared();
    let cg = Scratch::new(&mount);
    let devs = Devs::new();
    let p = c(cg.p());
    assert_eq!(allow_c(&p, b'c', 1, 3, RW), 0, "{}", last_error());
    assert_eq!(allow_c(&p, b'c', 1, 5, READ), 0, "{}", last_error());
    let old = get_state(&p);
    // SAFETY: the fd is the library's and stays open during the call.
    let old_map_id = sys::map_info(unsafe { BorrowedFd::borrow_raw(old.mapfd) })
        .unwrap()
        .id;
    // Keep the old map alive to look at it afterwards.
    let orphan = sys::map_get_fd_by_id(old_map_id).unwrap();
    let orphan_entries = map_content(orphan.as_fd());
    let old_ino = std::fs::metadata(&cg.path)
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .unwrap();
    std::fs::remove_dir(&cg.path).unwrap();
    std::fs::create_dir(&cg.path).unwrap();
    let new_ino = std::fs::metadata(&cg.path)
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .unwrap();
    assert_ne!(old_ino, new_ino, "a new cgroup");
    assert!(
        cg.attached().is_empty(),
        "the new cgroup starts with no program"
    );
    let s = get_state(&p);
    assert_eq!(
        (s.mapfd, s.progfd, s.count),
        (-1, -1, 0),
        "old state forgotten"
    );
    assert_eq!(
        cg.list(),
        "a *:* rwm\n",
        "nothing restricts the new cgroup yet"
    );
    assert_eq!(allow_c(&p, b'c', 136, -1, RW), 0, "{}", last_error());
    let new = get_state(&p);
    // SAFETY: as above.
    let new_map_id = sys::map_info(unsafe { BorrowedFd::borrow_raw(new.mapfd) })
        .unwrap()
        .id;
    assert_ne!(new_map_id, old_map_id);
    assert_eq!((new.count, new.max), (1, 64));
    assert_eq!(cg.attached().len(), 1, "a program on the new cgroup");
    assert_eq!(cg.list(), "c 136:* rw\n");
    assert_eq!(
        map_content(orphan.as_fd()),
        orphan_entries,
        "the orphaned map was written"
    );
    assert_enforced(
        &cg,
        &[
            (format!("rw:{}", devs.pts), true),
            (format!("rw:{}", devs.null), false),
            (format!("r:{}", devs.zero), false),
        ],
        "the new cgroup",
    );
}

/// Scenario 6b: a program swapped in by someone else without flags: the
/// next call notices; a foreign one is not adopted (EBUSY, naming its id),
/// libvirt's and another process's program of this library are.
#[test]
fn a_program_swapped_in_by_someone_else_is_noticed() {
    let Some(mount) = privileged() else { return };
    let _s = shared();
    let devs = Devs::new();

    // Someone else's program.
    let cg = Scratch::new(&mount);
    let p = c(cg.p());
    assert_eq!(allow_c(&p, b'c', 1, 3, RW), 0, "{}", last_error());
    let foreign = foreign_program(None);
    let foreign_id = prog_id(&foreign);
    attach_raw(&cg.path, &foreign, 0);
    assert_eq!(cg.attached(), vec![foreign_id]);
    for (what, ret) in [
        ("allow", allow_c(&p, b'c', 1, 5, READ)),
        // SAFETY: valid C string.
        ("deny_all", unsafe {
            vircgroup_v2_deny_all_devices(p.as_ptr())
        }),
        // SAFETY: valid C string.
        ("prepare_prog", unsafe {
            vircgroup_v2_devices_prepare_prog(p.as_ptr())
        }),
    ] {
        let (e, msg) = (errno(), last_error());
        assert_eq!((ret, e), (-1, libc::EBUSY), "{what}: {msg}");
        assert!(
            msg.contains(&foreign_id.to_string()),
            "{what}: {msg:?} names no id"
        );
    }
    let s = get_state(&p);
    assert_eq!((s.mapfd, s.progfd), (-1, -1), "not adopted");
    assert_eq!(cg.attached(), vec![foreign_id], "not replaced");
    assert_enforced(
        &cg,
        &[(format!("r:{}", devs.zero), true)],
        "the foreign program",
    );

    // libvirt's program, put back by a libvirt daemon: adopted, converted.
    let cg = Scratch::new(&mount);
    let p = c(cg.p());
    assert_eq!(allow_c(&p, b'c', 1, 3, RW), 0, "{}", last_error());
    let libvirt_id = attach_like_libvirt(&cg.path, 64, &[(b'c', 136, -1, RW)]);
    assert_eq!(allow_c(&p, b'c', 1, 5, READ), 0, "{}", last_error());
    assert_eq!(
        cg.list(),
        "c 1:5 r\nc 136:* rw\n",
        "libvirt's rules and the new one"
    );
    let ids = cg.attached();
    assert_eq!(ids.len(), 1);
    assert_ne!(ids[0], libvirt_id);
    assert_enforced(
        &cg,
        &[
            (format!("rw:{}", devs.pts), true),
            (format!("r:{}", devs.zero), true),
            (format!("r:{}", devs.null), false),
        ],
        "libvirt's program adopted",
    );

    // This library's program, swapped in by another process (the admin
    // tool): adopted with that process's rules.
    let cg = Scratch::new(&mount);
    let p = c(cg.p());
    assert_eq!(allow_c(&p, b'c', 1, 3, RW), 0, "{}", last_error());
    let ours = cg.attached();
    tool(&["deny", cg.p(), "a"]);
    tool(&["allow", cg.p(), "c 136:* rw"]);
    // With the table the other process wrote into the same table; with
    // format 5 its deny-all replaced the program. Either way the next call
    // works on what the kernel holds.
    let _ = ours;
    assert_eq!(allow_c(&p, b'c', 1, 5, READ), 0, "{}", last_error());
    assert_eq!(
        cg.list(),
        "c 1:5 r\nc 136:* rw\n",
        "the other process's rules and the new one"
    );
    assert_eq!(cg.attached().len(), 1);
}
