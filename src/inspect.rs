// SPDX-License-Identifier: LGPL-2.1-or-later
//! The admin tool's `inspect`: what one cgroup holds. It never attaches,
//! replaces or detaches a program and never writes a map: a cgroup set up
//! by libvirt's C code, or by an earlier release of this library, keeps
//! its program, and its rules are read and converted on the fly. (check,
//! list and explain are in `effective`.)
#![forbid(unsafe_code)]

use crate::cgroup::Cgroup;
use crate::recognise::{recognise, Found, Program};
use crate::Result;
use std::collections::HashMap;

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
