// SPDX-License-Identifier: LGPL-2.1-or-later
//! Rollback to libvirt's own C code: converts a cgroup's device program of
//! this library into libvirt's program and map, with the same rules.
//!
//! Stock libvirt adopts the first program and first map it finds on a
//! cgroup and writes its own value encoding (`access << 16 | type bits`)
//! into that map; against this library's program and encoding its hot-plug
//! rules would be denied. [`to_libvirt`] rewrites the rules in libvirt's
//! encoding ([`rules::get_key`], [`rules::get_perms`]) into a new map sized
//! as libvirt sizes it, loads [`libvirt_program`] for it and attaches it in
//! place of this library's program in one step. Nothing else of the
//! library is used: [`inspect`](crate::inspect::inspect) to read, [`sys`] to build.
//!
//! libvirt keeps one value per numbers, with type bits: `b` and `c` rules
//! on the same numbers convert only when they have the same permissions
//! (type bits 3). Otherwise the conversion would change the policy, and it
//! is refused, naming the rules.
#![forbid(unsafe_code)]

use crate::cgroup::Cgroup;
use crate::inspect;
use crate::program::{libvirt_program, LICENSE};
use crate::rules::{self, DevType};
use crate::sys::BPF_PROG_TYPE_CGROUP_DEVICE;
use crate::sys::{self, BPF_MAP_TYPE_HASH};
use crate::{Error, Result};
use std::os::fd::{AsFd, AsRawFd};

/// The capacity libvirt's C code gives a map holding `rules` rules: 64,
/// doubled while full (`virCgroupV2DevicesPrepareProg`).
pub fn libvirt_capacity(rules: usize) -> u32 {
    let mut max: u32 = 64;
    while (max as usize) < rules {
        max *= 2;
    }
    max
}

/// The (key, value) pairs in libvirt's encoding for map entries in this
/// library's encoding; an error naming the rules when an entry holds `b`
/// and `c` rules with different permissions.
pub fn libvirt_entries(entries: &[(u64, u32)]) -> Result<Vec<(u64, u32)>> {
    let mut out = Vec::with_capacity(entries.len());
    for &(key, value) in entries {
        // One rule, or a `b` and a `c` rule (merged into one `a` rule or
        // not, depending on how the library lists them).
        match rules::entry_rules(key, value).as_slice() {
            [rule] => {
                let ty = match rule.ty {
                    DevType::All => b'a',
                    DevType::Block => b'b',
                    DevType::Char => b'c',
                };
                out.push((key, rules::get_perms(rule.perms, ty)));
            }
            [one, other] if one.perms == other.perms => {
                out.push((key, rules::get_perms(one.perms, b'a')));
            }
            found => {
                let names: Vec<String> = found.iter().map(|r| format!("'{r}'")).collect();
                return Err(Error::invalid(format!(
                    "rules {} differ only in type: libvirt's map holds one value per \
                     device numbers, so converting would change them; make their \
                     permissions equal or deny one of them first",
                    names.join(" and ")
                )));
            }
        }
    }
    Ok(out)
}

/// What [`to_libvirt`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Converted {
    /// Rules (map entries) written into libvirt's map.
    pub rules: usize,
    /// Capacity of libvirt's map.
    pub max: u32,
    /// Kernel id of libvirt's program now attached.
    pub prog_id: u32,
}

/// Replaces this library's device program on `path` by libvirt's program
/// and map holding the same rules, in one step (`BPF_F_REPLACE` when the
/// cgroup has `BPF_F_ALLOW_MULTI`, or its fallback before Linux 5.6; a plain
/// attach otherwise), with the cgroup's lock held. Fails,
/// changing nothing, when the cgroup has no program of this library (libvirt's
/// own is left as it is: an error says so) or when the rules cannot be
/// expressed in libvirt's encoding. The daemon should be stopped meanwhile:
/// a rule it adds between the read and the attach would be lost.
pub fn to_libvirt(path: impl AsRef<std::path::Path>) -> Result<Converted> {
    let path = path.as_ref();
    let shown = rules::printable_path(path);
    let cg = Cgroup::open(path)?;
    cg.check_not_root()?;
    // Every other process of this library waits while the cgroup is
    // converted (and finds libvirt's program afterwards).
    let _lock = cg.lock()?;
    let found = inspect::inspect(path)?;
    let Some((ours, entries)) = found.rules else {
        return Err(Error::invalid(format!(
            "'{shown}' has no device program of this library to convert"
        )));
    };
    if found.libvirt {
        return Err(Error::invalid(format!(
            "'{shown}' already has libvirt's device program (id {})",
            ours.id
        )));
    }
    let converted = libvirt_entries(&entries)?;
    let max = libvirt_capacity(converted.len());
    // libvirt's C code names neither its map nor its program.
    let map = sys::map_create(BPF_MAP_TYPE_HASH, 8, 4, max, "")?;
    sys::map_update_batch(map.as_fd(), &converted)?;
    let prog = sys::prog_load(
        BPF_PROG_TYPE_CGROUP_DEVICE,
        &libvirt_program(map.as_raw_fd()),
        LICENSE,
        "",
    )?;
    let prog_id = sys::prog_info(prog.as_fd())?.id;
    let attached = cg.attached()?;
    if !attached.ids.contains(&ours.id) {
        return Err(Error::new(
            libc::EAGAIN,
            format!(
                "the device program {} of '{shown}' changed while converting it; try again",
                ours.id
            ),
        ));
    }
    let old = sys::prog_get_fd_by_id(ours.id)?;
    // In place of ours in one step (BPF_F_REPLACE, or its fallback).
    crate::install::attach(&cg, prog.as_fd(), attached.flags, Some(old.as_fd()))?;
    log::info!(
        "'{shown}': program {} replaced by libvirt's program {prog_id} ({} rules, map of {max})",
        ours.id,
        converted.len()
    );
    Ok(Converted {
        rules: converted.len(),
        max,
        prog_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::Rule;

    fn entry(rules: &[(u8, i32, i32, i32)]) -> (u64, u32) {
        let rs: Vec<Rule> = rules
            .iter()
            .map(|&(t, ma, mi, p)| Rule::new(t, ma, mi, p).unwrap())
            .collect();
        (rs[0].key(), rs.iter().fold(0, |v, r| v | r.value()))
    }

    #[test]
    fn capacity_is_libvirts() {
        assert_eq!(libvirt_capacity(0), 64);
        assert_eq!(libvirt_capacity(64), 64);
        assert_eq!(libvirt_capacity(65), 128);
        assert_eq!(libvirt_capacity(300), 512);
    }

    #[test]
    fn values_are_libvirts_get_perms() {
        let got = libvirt_entries(&[
            entry(&[(b'c', 1, 3, rules::RW)]),
            entry(&[(b'b', 7, -1, rules::READ)]),
            entry(&[(b'b', 8, 0, rules::RWM), (b'c', 8, 0, rules::RWM)]),
        ])
        .unwrap();
        assert_eq!(
            got,
            vec![
                (rules::get_key(1, 3), (2 | 4) << 16 | 2),
                (rules::get_key(7, -1), 2 << 16 | 1),
                (rules::get_key(8, 0), 7 << 16 | 3),
            ]
        );
    }

    #[test]
    fn different_permissions_per_type_are_refused_naming_the_rules() {
        let e = libvirt_entries(&[entry(&[(b'c', 1, 3, rules::RW), (b'b', 1, 3, rules::READ)])])
            .unwrap_err();
        assert_eq!(e.errno(), libc::EINVAL);
        assert!(e.message().contains("'b 1:3 r' and 'c 1:3 rw'"), "{e}");
    }
}
