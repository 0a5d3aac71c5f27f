// SPDX-License-Identifier: LGPL-2.1-or-later
//! What the kernel runs for a cgroup, for the oracle tests (`testing`
//! feature only): the exact instructions the library loaded (checked
//! against the kernel's tag of the attached program) and the maps they
//! read, read back from the kernel.
#![forbid(unsafe_code)]

use crate::cgroup::Cgroup;
use crate::held::Maps;
use crate::insn::Insn;
use crate::inspect::program_rules;
use crate::program::interp;
use crate::recognise::tag_of;
use crate::recognise::{recognise, Found, Program};
use crate::registry::with_cgroup;
use crate::sys;
use crate::{Error, Result};
use std::os::fd::{AsFd, AsRawFd};

/// The instructions and maps of the program held for the cgroup after
/// detection; None when the library holds none.
pub fn snapshot(path: impl AsRef<std::path::Path>) -> Result<Option<(Vec<Insn>, interp::Maps)>> {
    let path = path.as_ref();
    with_cgroup(path, |cg, held| {
        crate::policy::detect_in(cg, held)?;
        let Some(h) = held.get() else {
            return Ok(None);
        };
        let insns = h.maps.program();
        // The kernel's tag hashes the instructions it was given (map fds
        // zeroed): equal tags tie these instructions to the loaded ones.
        let tag = sys::prog_info(h.prog.as_fd())?.tag;
        if tag != tag_of(&insns, h.maps.name())? {
            return Err(Error::new(
                libc::EPROTO,
                format!(
                    "program {} has tag {tag:02x?}, not the one of the program for its maps",
                    h.prog_id
                ),
            ));
        }
        let maps = match &h.maps {
            Maps::Table(t) => {
                interp::Maps::from([(t.map().as_raw_fd(), interp::Map::Value(t.bytes()))])
            }
            Maps::Hash(m) => {
                let rules = sys::map_entries::<u64>(m.map())?.into_iter().collect();
                let words = sys::map_lookup_batch::<u32>(
                    m.index(),
                    crate::hash::layout::INDEX_ENTRIES as usize,
                )?
                .into_iter()
                .filter(|&(_, w)| w != 0)
                .collect();
                interp::Maps::from([
                    (m.map().as_raw_fd(), interp::Map::Hash(rules)),
                    (
                        m.index().as_raw_fd(),
                        interp::Map::Array {
                            len: crate::hash::layout::INDEX_ENTRIES,
                            words,
                        },
                    ),
                ])
            }
        };
        Ok(Some((insns, maps)))
    })
}

/// What the kernel holds for the program of this library (or an earlier
/// release's, or libvirt's) attached to a cgroup, read directly, without
/// the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelView {
    /// The program.
    pub program: Program,
    /// Its format: 6 the table, 5 the hash maps, 1-4 earlier releases', 0
    /// libvirt's.
    pub format: u32,
    /// The capacity of its maps.
    pub max: u32,
    /// The rules, in the current encoding.
    pub rules: std::collections::BTreeMap<u64, u32>,
    /// Whether the program's hints (the table's per-major bytes and
    /// `ANY_MINOR`, format 5's index) announce every rule.
    pub hints_cover: bool,
}

/// The [`KernelView`] of the cgroup at `path`; None when no program the
/// library recognises is attached.
pub fn kernel_view(path: impl AsRef<std::path::Path>) -> Result<Option<KernelView>> {
    let path = path.as_ref();
    let cg = Cgroup::open(path)?;
    let attached = cg.attached()?;
    let Some(found) = recognise(&cg, &attached)?.0 else {
        return Ok(None);
    };
    let (program, rules) = program_rules(&found)?;
    let rules = rules.into_iter().collect();
    Ok(Some(match found {
        Found::Convert(f) => KernelView {
            program,
            format: f.format,
            max: f.max,
            rules,
            hints_cover: true,
        },
        Found::Ours(h) => {
            let (format, hints_cover) = match &h.maps {
                Maps::Table(t) => (6, t.hints_cover()),
                Maps::Hash(m) => {
                    let words: std::collections::HashMap<u32, u32> = sys::map_lookup_batch::<u32>(
                        m.index(),
                        crate::hash::layout::INDEX_ENTRIES as usize,
                    )?
                    .into_iter()
                    .collect();
                    let covered = m.rules().iter().all(|(&k, &v)| {
                        crate::hash::layout::index_bits(k, v).is_none_or(|(slot, bits)| {
                            words.get(&slot).copied().unwrap_or(0) & bits == bits
                        })
                    });
                    (5, covered)
                }
            };
            KernelView {
                program,
                format,
                max: h.maps.max(),
                rules,
                hints_cover,
            }
        }
    }))
}
