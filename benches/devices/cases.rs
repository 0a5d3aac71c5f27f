// SPDX-License-Identifier: LGPL-2.1-or-later
//! The rule sets and the cases: filler rules, the probed rule and node
//! of each case, the rule counts, libvirt's default ACL for QEMU.

use vircgroup_v2_devices::rules::{self, READ, RW};

/// A rule as the C API takes it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spec {
    pub(crate) ty: u8,
    pub(crate) major: i32,
    pub(crate) minor: i32,
    pub(crate) perms: i32,
}

impl Spec {
    pub(crate) const fn new(ty: u8, major: i32, minor: i32, perms: i32) -> Spec {
        Spec {
            ty,
            major,
            minor,
            perms,
        }
    }

    /// libvirt's key and value.
    pub(crate) fn libvirt(&self) -> (u64, u32) {
        (
            rules::get_key(self.major, self.minor),
            rules::get_perms(self.perms, self.ty),
        )
    }
}

/// The majors the probes use: no filler rule has them.
const PROBED_MAJORS: [i32; 5] = [1, 136, 200, 240, 241];
/// Majors the filler rules cycle through.
const FILLER_MAJORS: usize = 500;

/// `n` distinct exact rules over 500 majors, two in three char and one in
/// three block, with minors from 1000 up: none covers a probed device.
pub(crate) fn fillers(n: usize) -> Vec<Spec> {
    let majors: Vec<i32> = (2..)
        .filter(|m| !PROBED_MAJORS.contains(m))
        .take(FILLER_MAJORS)
        .collect();
    (0..n)
        .map(|i| {
            let ty = if i % 3 == 2 { b'b' } else { b'c' };
            let minor = 1000 + (i / FILLER_MAJORS) as i32;
            Spec::new(ty, majors[i % FILLER_MAJORS], minor, RW)
        })
        .collect()
}

/// What one measurement probes: the rule it hits (None: no extra rule),
/// the node a child opens read-only, and whether the open must pass.
pub(crate) struct Case {
    pub(crate) name: &'static str,
    rule: Option<Spec>,
    pub(crate) node: (u64, u64),
    pub(crate) allowed: bool,
}

pub(crate) const CASES: [Case; 6] = [
    Case {
        name: "exact hit: `c 1:3 rw`, open c 1:3",
        rule: Some(Spec::new(b'c', 1, 3, RW)),
        node: (1, 3),
        allowed: true,
    },
    Case {
        name: "major wildcard hit: `c 136:* rw`, open c 136:5",
        rule: Some(Spec::new(b'c', 136, -1, RW)),
        node: (136, 5),
        allowed: true,
    },
    Case {
        name: "minor wildcard hit: `c *:77 rw`, open c 200:77",
        rule: Some(Spec::new(b'c', -1, 77, RW)),
        node: (200, 77),
        allowed: true,
    },
    Case {
        name: "all-wildcard hit: `a *:* r`, open c 240:9",
        rule: Some(Spec::new(b'a', -1, -1, READ)),
        node: (240, 9),
        allowed: true,
    },
    Case {
        name: "miss, no wildcard rule: open c 241:1",
        rule: None,
        node: (241, 1),
        allowed: false,
    },
    Case {
        name: "miss, `c 136:* rw` present: open c 241:1",
        rule: Some(Spec::new(b'c', 136, -1, RW)),
        node: (241, 1),
        allowed: false,
    },
];

/// Rule counts for ours and the seed (30: the upper end of what a VM has),
/// and for the runc-style program, whose cost grows with the rules.
pub(crate) const SIZES: [usize; 5] = [10, 30, 200, 1000, 10_000];
pub(crate) const RUNC_SIZES: [usize; 3] = [10, 30, 200];
/// Flat: ours at `FLAT_TO` rules against ours at `FLAT_FROM`.
pub(crate) const FLAT_FROM: usize = 10;
pub(crate) const FLAT_TO: usize = 10_000;

/// The `n` rules of a case: fillers, then the case's rule (last, so that
/// the runc-style program runs every other block before it).
pub(crate) fn case_rules(case: &Case, n: usize) -> Vec<Spec> {
    let mut rules = fillers(n - usize::from(case.rule.is_some()));
    rules.extend(case.rule);
    rules
}

/// libvirt's default ACL for a QEMU guest (`defaultDeviceACL`, the ptys).
pub(crate) const QEMU_ACL: [Spec; 8] = [
    Spec::new(b'c', 1, 3, RW),
    Spec::new(b'c', 1, 7, RW),
    Spec::new(b'c', 1, 5, RW),
    Spec::new(b'c', 1, 8, RW),
    Spec::new(b'c', 1, 9, RW),
    Spec::new(b'c', 5, 2, RW),
    Spec::new(b'c', 10, 232, RW),
    Spec::new(b'c', 136, -1, RW),
];
