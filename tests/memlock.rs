// SPDX-License-Identifier: LGPL-2.1-or-later
//! Locked memory: before Linux 5.11 BPF maps and programs are
//! charged to RLIMIT_MEMLOCK, whose default was 64 KiB. A daemon started
//! with that limit must still hold 100 VMs' cgroups: the library raises
//! the limit as far as the process may (as libbpf does) on the first
//! refusal, also when several threads are refused at once. On later kernels the limit plays no part and this passes
//! either way; the kernel matrix runs it on Debian's 5.10.
mod common;

use common::*;
use std::process::Command;

const VMS: usize = 100;

#[test]
fn a_hundred_vms_fit_under_the_default_memlock_limit() {
    if privileged().is_none() {
        return;
    }
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "scenario_hundred_vms",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .status()
        .unwrap();
    assert!(status.success(), "{status}");
}

#[allow(clippy::unnecessary_cast)] // rlim_t is 32 bits on some targets
fn memlock() -> (u64, u64) {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: writes one rlimit.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r) }, 0);
    (r.rlim_cur as u64, r.rlim_max as u64)
}

#[test]
#[ignore = "run by a_hundred_vms_fit_under_the_default_memlock_limit"]
fn scenario_hundred_vms() {
    let mount = privileged().unwrap();
    // The old kernels' default, soft and hard, as a daemon started by an
    // init without DefaultLimitMEMLOCK has it.
    let r = libc::rlimit {
        rlim_cur: 64 * 1024,
        rlim_max: 64 * 1024,
    };
    // SAFETY: sets this process's limit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &r) }, 0);
    let cgs: Vec<Scratch> = (0..VMS).map(|_| Scratch::new(&mount)).collect();
    // Set up by 4 threads at once, as a daemon starts VMs: the first
    // refusals come in several threads together, and each must get past
    // the one raise of the limit.
    const THREADS: usize = 4;
    let start = std::sync::Barrier::new(THREADS);
    std::thread::scope(|s| {
        for (t, chunk) in cgs.chunks(VMS / THREADS).enumerate() {
            let start = &start;
            s.spawn(move || {
                start.wait();
                for (k, cg) in chunk.iter().enumerate() {
                    set_up_vm(cg.p(), t * (VMS / THREADS) + k);
                    assert_eq!(
                        cg.list().lines().count(),
                        8,
                        "VM {}",
                        t * (VMS / THREADS) + k
                    );
                }
            });
        }
    });
    let d = Nodes::new();
    let null = d.node("null", 'c', 1, 3);
    let tty = d.node("tty", 'c', 5, 0);
    for cg in [&cgs[0], &cgs[VMS - 1]] {
        cg.expect(&[
            (format!("rw:{null}"), None, true),
            (format!("r:{tty}"), None, false),
        ]);
    }
    let (soft, hard) = memlock();
    eprintln!("{VMS} VMs' cgroups set up; RLIMIT_MEMLOCK now {soft} / {hard} (started at 65536)");
}

/// deny_all, then libvirt's default ACL and `c 136:*`.
fn set_up_vm(p: &str, i: usize) {
    vircgroup_v2_devices::api::deny_all(p).unwrap_or_else(|e| panic!("VM {i}: deny_all: {e}"));
    for (t, ma, mi) in [
        (b'c', 1, 3),
        (b'c', 1, 5),
        (b'c', 1, 7),
        (b'c', 1, 8),
        (b'c', 1, 9),
        (b'c', 5, 2),
        (b'c', 10, 232),
        (b'c', 136, -1),
    ] {
        vircgroup_v2_devices::api::allow(p, &rule(t, ma, mi, 3))
            .unwrap_or_else(|e| panic!("VM {i}: allow {t}:{ma}:{mi}: {e}"));
    }
}
