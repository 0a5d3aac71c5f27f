// SPDX-License-Identifier: LGPL-2.1-or-later
//! Scenario 9: many create/remove cycles keep fds, heap and RSS flat.

use crate::common::*;
use crate::helpers::*;
use ::vircgroup_v2_devices::capi::*;
use ::vircgroup_v2_devices::rules::RW;
use std::time::Instant;

/// Scenario 9: 1,000 cycles of create, 20 allows, 20 denies and remove on
/// fresh cgroups: the fd count, the bytes this thread holds on the heap
/// and the RSS are the same at the end (measured after a warm-up, so that lazily made
/// things and allocator pools are in place).
#[test]
fn a_thousand_create_remove_cycles_keep_fds_and_rss_flat() {
    let Some(mount) = privileged() else { return };
    let _beacon = hold_beacon(&mount);
    let _x = exclusive();
    let cycle = |i: usize| {
        let cg = Scratch::new(&mount);
        let p = c(cg.p());
        // SAFETY: valid C string.
        let ret = unsafe { vircgroup_v2_devices_create_prog(p.as_ptr()) };
        assert_eq!(ret, 0, "{}", last_error());
        for minor in 0..20 {
            assert_eq!(allow_c(&p, b'c', 240, minor, RW), 0, "{}", last_error());
        }
        assert_eq!(get_state(&p).count, 20, "cycle {i}");
        for minor in 0..20 {
            assert_eq!(deny_c(&p, b'c', 240, minor, RW), 0, "{}", last_error());
        }
        assert_eq!(get_state(&p).count, 0, "cycle {i}");
        // SAFETY: valid C string.
        assert_eq!(unsafe { vircgroup_v2_devices_remove_prog(p.as_ptr()) }, 0);
        // Scratch removes the cgroup.
    };
    for i in 0..100 {
        cycle(i);
    }
    let (fds, heap, rss) = (fd_count(), heap_bytes(), rss_kib());
    let started = Instant::now();
    for i in 0..1000 {
        cycle(i);
    }
    let elapsed = started.elapsed();
    let (fds_after, heap_after, rss_after) = (fd_count(), heap_bytes(), rss_kib());
    eprintln!(
        "cycles: 1000 in {:.2}s; fds {fds} -> {fds_after}; heap {heap} -> {heap_after} bytes; \
         RSS {rss} -> {rss_after} KiB",
        elapsed.as_secs_f64()
    );
    assert_eq!(fds_after, fds, "fds: {:#?}", fd_targets());
    // A leak of one allocation a cycle shows here.
    assert!(
        heap_after <= heap + 1024,
        "the heap grew from {heap} to {heap_after} bytes over 1000 cycles"
    );
    // Pages: a leak of 1 KiB a cycle would be 1000 KiB.
    assert!(
        rss_after <= rss + 512,
        "RSS grew from {rss} KiB to {rss_after} KiB over 1000 cycles"
    );
}
