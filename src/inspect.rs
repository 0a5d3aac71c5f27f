// SPDX-License-Identifier: LGPL-2.1-or-later
//! The read-only calls: `check`, `list` and the admin tool's `inspect`.
//! They never attach, replace or detach a program and never write a map: a
//! cgroup set up by libvirt's C code, or by an earlier release of this
//! library, keeps its program, and its rules are read and converted on the
//! fly.
#![forbid(unsafe_code)]

use crate::cgroup::Cgroup;
use crate::held::Maps;
use crate::recognise::{recognise, Found, Program};
use crate::registry::{with_cgroup, Slot};
use crate::rules::{self, Rule};
use crate::{Error, Result};
use std::collections::HashMap;

/// The rules in force, as a read sees them.
enum View<'a> {
    /// No device program: everything is allowed.
    Unrestricted,
    /// The held table, read in place.
    Table(&'a crate::table::Table),
    /// A copy.
    Rules(HashMap<u64, u32>),
}

/// The rules in force on `cg`: the held program's when it is still
/// attached (a format 5 copy refreshed first), else what is attached,
/// recognised (a current program of this library's is held from then on,
/// which changes nothing in the kernel). An error when only programs this
/// library does not know are attached.
fn view<'a>(cg: &Cgroup, held: &'a mut Slot<'_>) -> Result<View<'a>> {
    let attached = cg.attached()?;
    if let Some(h) = held.get() {
        if !attached.ids.contains(&h.prog_id) {
            held.clear();
        }
    }
    if held.is_empty() {
        match recognise(cg, &attached)?.0 {
            Some(Found::Ours(h)) => held.set(h),
            Some(Found::Convert(f)) => return Ok(View::Rules(f.rules)),
            None if attached.ids.is_empty() => return Ok(View::Unrestricted),
            None => {
                return Err(Error::new(
                    libc::ENOENT,
                    format!(
                        "'{}' holds device programs this library does not know ({:?}): \
                         its rules cannot be read",
                        cg.path().display(),
                        attached.ids
                    ),
                ))
            }
        }
    }
    let h = held.get_mut().expect("held or returned");
    Ok(match &mut h.maps {
        Maps::Table(t) => View::Table(t),
        Maps::Hash(m) => {
            let _lock = cg.lock()?;
            m.refresh()?;
            View::Rules(m.rules().clone())
        }
    })
}

/// Whether the rules in force on the cgroup allow `rule`'s access to every
/// device it names, as the kernel's program decides. A cgroup with no
/// device program allows everything.
pub fn check(path: impl AsRef<std::path::Path>, rule: &Rule) -> Result<bool> {
    let path = path.as_ref();
    with_cgroup(path, |cg, held| match view(cg, held)? {
        View::Unrestricted => Ok(true),
        View::Table(t) => t.read(|t| t.allows(rule)),
        View::Rules(r) => Ok(rules::grants(rule, |k| r.get(&k).copied())),
    })
}

/// The rules as cgroup v1 `devices.list` text. A cgroup with no device
/// program allows everything: `a *:* rwm`, the only `a` line a list has.
pub fn list(path: impl AsRef<std::path::Path>) -> Result<String> {
    let path = path.as_ref();
    with_cgroup(path, |cg, held| {
        let entries: Vec<(u64, u32)> = match view(cg, held)? {
            View::Unrestricted => return Ok(rules::UNRESTRICTED_LIST.to_string()),
            View::Table(t) => t.read(|t| t.enforced())?,
            View::Rules(r) => r.into_iter().collect(),
        };
        Ok(rules::list_text(&entries))
    })
}

/// What [`inspect`] read from a cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// The program of this library (any release) or of libvirt's C code
    /// attached there, with its rules as map entries in this library's
    /// encoding (converted, entries that are not rules skipped); None when
    /// neither is attached.
    pub rules: Option<(Program, Vec<(u64, u32)>)>,
    /// Whether `rules` comes from libvirt's program.
    pub libvirt: bool,
    /// Every other device program attached there.
    pub others: Vec<Program>,
}

/// The program `recognise` found and its rules (current encoding).
pub(crate) fn program_rules(found: &Found) -> Result<(Program, HashMap<u64, u32>)> {
    Ok(match found {
        Found::Ours(h) => (
            Program {
                id: h.prog_id,
                name: h.maps.name().to_string(),
            },
            h.maps.rules()?,
        ),
        Found::Convert(f) => (f.program.clone(), f.rules.clone()),
    })
}

/// Reads the device programs attached to the cgroup and the rules of the
/// one this library recognises, changing nothing and recording nothing.
pub fn inspect(path: impl AsRef<std::path::Path>) -> Result<Inspection> {
    let path = path.as_ref();
    let cg = Cgroup::open(path)?;
    let attached = cg.attached()?;
    let (found, others) = recognise(&cg, &attached)?;
    let libvirt = matches!(&found, Some(Found::Convert(f)) if f.libvirt());
    let rules = match found {
        None => None,
        Some(found) => {
            let (program, rules) = program_rules(&found)?;
            Some((program, rules.into_iter().collect()))
        }
    };
    Ok(Inspection {
        rules,
        libvirt,
        others,
    })
}
