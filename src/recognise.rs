// SPDX-License-Identifier: LGPL-2.1-or-later
//! Where a program attached to a cgroup is recognised: this library's
//! current formats (adopted as they are), its earlier releases' and
//! libvirt's (their rules read and converted, for the caller to replace the
//! program), or someone else's (left alone).
//!
//! A program is recognised by the kernel's tag of its instructions (a hash
//! of them with the map fds zeroed) and the shape of its maps; the name
//! tells the format. The tags of the fixed programs (libvirt's, formats
//! 1-5) are learnt from this kernel once per process, by loading them
//! against scratch maps; a table's program has the table's hash
//! parameters as immediates, so its tag is learnt per table, by loading
//! the program for the table found.
#![forbid(unsafe_code)]

use crate::cgroup::Cgroup;
use crate::hash::HashMaps;
use crate::held::{Held, Maps};
use crate::program::{self, legacy, libvirt_program, LICENSE};
use crate::rules;
use crate::sys::{self, BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_HASH, BPF_PROG_TYPE_CGROUP_DEVICE};
use crate::table::Table;
use crate::Result;
use once_cell::sync::OnceCell;
use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

/// A program attached to a cgroup: its id and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    /// Kernel id.
    pub id: u32,
    /// Name the program was loaded with (may be empty).
    pub name: String,
}

/// A recognised program whose rules must be converted: an earlier release
/// of this library's, or libvirt's.
#[derive(Debug)]
pub(crate) struct Foreign {
    /// The program (to replace it with `BPF_F_REPLACE`).
    pub prog: OwnedFd,
    /// Its id and name.
    pub program: Program,
    /// The earlier format it is (1-4), 0 for libvirt's.
    pub format: u32,
    /// Its map's capacity.
    pub max: u32,
    /// Its rules, in the current encoding.
    pub rules: HashMap<u64, u32>,
}

impl Foreign {
    /// Whether it is libvirt's program.
    pub fn libvirt(&self) -> bool {
        self.format == 0
    }

    /// What it is, for messages.
    pub fn what(&self) -> String {
        describe(self.format)
    }
}

fn describe(format: u32) -> String {
    match format {
        0 => "libvirt's program".to_string(),
        f => format!("the format {f} program of an earlier release"),
    }
}

/// What is attached to a cgroup.
#[derive(Debug)]
pub(crate) enum Found {
    /// A program of this library in a current format: adopt it.
    Ours(Held),
    /// An earlier release's or libvirt's: convert its rules.
    Convert(Foreign),
}

/// Tags of the fixed programs on this kernel.
struct Tags {
    libvirt: [u8; 8],
    /// Formats 1 to 4 (format 5 has format 4's instructions).
    legacy: [[u8; 8]; 4],
}

/// Learnt without a lock held while loading (two threads may both load;
/// the first answer stays): a child forked while another thread was
/// learning them must not wait for it.
fn tags() -> Result<&'static Tags> {
    static TAGS: OnceCell<Tags> = OnceCell::new();
    if let Some(t) = TAGS.get() {
        return Ok(t);
    }
    let learnt = (|| -> Result<Tags> {
        let map = sys::map_create(BPF_MAP_TYPE_HASH, 8, 4, 1, "vcg2dev_tag")?;
        let index = sys::map_create(BPF_MAP_TYPE_ARRAY, 4, 4, 1, "vcg2dev_tag")?;
        let (m, i) = (map.as_raw_fd(), index.as_raw_fd());
        let mut legacy = [[0; 8]; 4];
        for (tag, f) in legacy.iter_mut().zip(legacy::FORMATS) {
            *tag = tag_of(&f.program(m, i), legacy::NAME)?;
        }
        Ok(Tags {
            libvirt: tag_of(&libvirt_program(m), "")?,
            legacy,
        })
    })()?;
    let _ = TAGS.set(learnt);
    Ok(TAGS.get().expect("set just now"))
}

/// The kernel's tag of `insns`, loaded once and closed.
pub(crate) fn tag_of(insns: &[crate::insn::Insn], name: &str) -> Result<[u8; 8]> {
    let prog = sys::prog_load(BPF_PROG_TYPE_CGROUP_DEVICE, insns, LICENSE, name)?;
    Ok(sys::prog_info(prog.as_fd())?.tag)
}

/// The maps of program `id` by fd, with their info.
fn maps_of(map_ids: &[u32]) -> Result<Vec<(OwnedFd, sys::MapInfo)>> {
    map_ids
        .iter()
        .map(|&id| {
            let fd = sys::map_get_fd_by_id(id)?;
            let info = sys::map_info(fd.as_fd())?;
            Ok((fd, info))
        })
        .collect()
}

fn is_rule_map(i: &sys::MapInfo) -> bool {
    i.map_type == BPF_MAP_TYPE_HASH && i.key_size == 8 && i.value_size == 4
}

fn is_index(i: &sys::MapInfo, entries: u32) -> bool {
    i.map_type == BPF_MAP_TYPE_ARRAY
        && i.key_size == 4
        && i.value_size == 4
        && i.max_entries == entries
}

/// The rule map and (when `index` is given, of that many entries) the
/// index among `maps`; None when the maps are not exactly those.
fn split_maps(
    mut maps: Vec<(OwnedFd, sys::MapInfo)>,
    index: Option<u32>,
) -> Option<((OwnedFd, u32), Option<OwnedFd>)> {
    if maps.len() != 1 + usize::from(index.is_some()) {
        return None;
    }
    let r = maps.iter().position(|(_, i)| is_rule_map(i))?;
    let (rule_map, info) = maps.remove(r);
    let index = match index {
        None => None,
        Some(n) => {
            let (fd, i) = maps.pop()?;
            if !is_index(&i, n) {
                return None;
            }
            Some(fd)
        }
    };
    Some(((rule_map, info.max_entries), index))
}

/// The first program attached to `cg` (among `attached`, a query of it)
/// that is this library's or libvirt's, with maps of the right shape; and
/// the others.
pub(crate) fn recognise(
    cg: &Cgroup,
    attached: &sys::Attached,
) -> Result<(Option<Found>, Vec<Program>)> {
    let mut found = None;
    let mut others = Vec::new();
    for &id in &attached.ids {
        let prog = match sys::prog_get_fd_by_id(id) {
            Ok(p) => p,
            // Detached and freed since the query.
            Err(e) if e.errno() == libc::ENOENT => continue,
            Err(e) => return Err(e),
        };
        let info = sys::prog_info(prog.as_fd())?;
        let program = Program {
            id,
            name: info.name.clone(),
        };
        if found.is_none() {
            if let Some(f) = classify(prog, &info, program.clone())? {
                found = Some(f);
                continue;
            }
            log::debug!(
                "program {id} ({:?}) on '{}' is not this library's nor libvirt's",
                info.name,
                cg.path().display()
            );
        }
        others.push(program);
    }
    Ok((found, others))
}

fn classify(prog: OwnedFd, info: &sys::ProgInfo, program: Program) -> Result<Option<Found>> {
    if info.name == program::table::NAME {
        return ours_table(prog, info);
    }
    let tags = tags()?;
    if info.name == program::hash::NAME && info.tag == tags.legacy[3] {
        return ours_hash(prog, info);
    }
    earlier(prog, info, program, tags)
}

/// A program named as ours of format 6: ours when its map is a table and
/// its instructions those of the table's program.
fn ours_table(prog: OwnedFd, info: &sys::ProgInfo) -> Result<Option<Found>> {
    let id = info.id;
    let mut maps = maps_of(&info.map_ids)?;
    if maps.len() != 1 {
        return Ok(None);
    }
    let (fd, _) = maps.remove(0);
    let Some(table) = Table::open(fd)? else {
        log::warn!(
            "program {id} is named {:?} but its map is not a table",
            info.name
        );
        return Ok(None);
    };
    if tag_of(&program::table::for_table(&table), program::table::NAME)? != info.tag {
        log::warn!(
            "program {id} is named {:?} but has other instructions",
            info.name
        );
        return Ok(None);
    }
    Ok(Some(Found::Ours(Held {
        prog,
        prog_id: id,
        maps: Maps::Table(table),
    })))
}

/// Our program of format 5: adopted with its rule map and index.
fn ours_hash(prog: OwnedFd, info: &sys::ProgInfo) -> Result<Option<Found>> {
    let id = info.id;
    let maps = maps_of(&info.map_ids)?;
    let Some(((map, max), Some(index))) =
        split_maps(maps, Some(crate::hash::layout::INDEX_ENTRIES))
    else {
        log::warn!("program {id} is format 5 but its maps are not: not adopted");
        return Ok(None);
    };
    Ok(Some(Found::Ours(Held {
        prog,
        prog_id: id,
        maps: Maps::Hash(HashMaps::adopt(map, index, max)?),
    })))
}

/// libvirt's program or an earlier release's (formats 1-4): its rules read
/// and converted, for a new program to replace it.
fn earlier(
    prog: OwnedFd,
    info: &sys::ProgInfo,
    program: Program,
    tags: &Tags,
) -> Result<Option<Found>> {
    let id = info.id;
    type Convert = Box<dyn Fn(u32) -> Option<u32>>;
    let (format, convert): (u32, Convert) = if info.tag == tags.libvirt {
        (0, Box::new(rules::from_libvirt_value))
    } else if let Some(f) = legacy::FORMATS
        .iter()
        .zip(&tags.legacy)
        .find(|(_, t)| **t == info.tag && info.name == legacy::NAME)
        .map(|(f, _)| *f)
    {
        (f.format, Box::new(move |v| f.convert(v)))
    } else {
        return Ok(None);
    };
    let index = legacy::FORMATS
        .iter()
        .zip(&tags.legacy)
        .any(|(f, t)| f.with_index && *t == info.tag)
        .then_some(legacy::INDEX_ENTRIES);
    let what = describe(format);
    let maps = maps_of(&info.map_ids)?;
    let Some(((map, max), _)) = split_maps(maps, index) else {
        log::warn!("program {id} is {what} but its maps are not: not adopted");
        return Ok(None);
    };
    let mut rules = HashMap::new();
    for (key, value) in sys::map_entries::<u64>(map.as_fd())? {
        match convert(value) {
            Some(v) if rules::valid_entry(key, v) => {
                *rules.entry(key).or_insert(0) |= v;
            }
            _ => log::warn!(
                "entry {key:#018x} = {value:#010x} of {what}'s map is not a rule: skipped"
            ),
        }
    }
    Ok(Some(Found::Convert(Foreign {
        prog,
        program,
        format,
        max,
        rules,
    })))
}
