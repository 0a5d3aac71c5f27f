// SPDX-License-Identifier: LGPL-2.1-or-later
//! The control plane, timed: 10,000 allows, and a QEMU start against
//! libvirt's C sequence, with their bpf(2) calls (counted by `sys::hook`).

use crate::cases::*;
use crate::cgroups::*;
use crate::libvirt_c;
use crate::options::*;
use crate::ours;
use crate::programs::*;
use crate::Res;
use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;
use std::time::Instant;
use vircgroup_v2_devices::api::INITIAL_MAX;
use vircgroup_v2_devices::program::libvirt_program;
use vircgroup_v2_devices::sys::{self, hook};
use vircgroup_v2_devices::table::Table;

/// bpf(2) calls made by this thread during `f`: the total and per command.
/// The library's calls are counted by `sys::hook`, the replay's by
/// `libvirt_c`.
pub(crate) fn count_calls<R>(f: impl FnOnce() -> R) -> (R, Calls) {
    let before = (hook::calls(), libvirt_c::calls());
    let r = f();
    let after = (hook::calls(), libvirt_c::calls());
    let mut per = [0u64; hook::COMMANDS];
    for (i, p) in per.iter_mut().enumerate() {
        *p = (after.0[i] - before.0[i]) + (after.1[i] - before.1[i]);
    }
    (r, Calls(per))
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Calls([u64; hook::COMMANDS]);

impl Calls {
    pub(crate) fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// "2 (PROG_QUERY 1, MAP_UPDATE_ELEM 1)", per `per` operations.
    pub(crate) fn describe(&self, per: u64) -> String {
        let each = |n: u64| {
            if n % per == 0 {
                format!("{}", n / per)
            } else {
                format!("{:.2}", n as f64 / per as f64)
            }
        };
        let parts: Vec<String> = self
            .0
            .iter()
            .enumerate()
            .filter(|&(_, &n)| n > 0)
            .map(|(cmd, &n)| format!("{} {}", cmd_name(cmd), each(n)))
            .collect();
        format!("{} ({})", each(self.total()), parts.join(", "))
    }
}

fn cmd_name(cmd: usize) -> String {
    use sys::cmd::*;
    let names = [
        (MAP_CREATE, "MAP_CREATE"),
        (MAP_LOOKUP_ELEM, "MAP_LOOKUP_ELEM"),
        (MAP_UPDATE_ELEM, "MAP_UPDATE_ELEM"),
        (MAP_DELETE_ELEM, "MAP_DELETE_ELEM"),
        (MAP_GET_NEXT_KEY, "MAP_GET_NEXT_KEY"),
        (PROG_LOAD, "PROG_LOAD"),
        (PROG_ATTACH, "PROG_ATTACH"),
        (PROG_DETACH, "PROG_DETACH"),
        (PROG_GET_FD_BY_ID, "PROG_GET_FD_BY_ID"),
        (MAP_GET_FD_BY_ID, "MAP_GET_FD_BY_ID"),
        (OBJ_GET_INFO_BY_FD, "OBJ_GET_INFO_BY_FD"),
        (PROG_QUERY, "PROG_QUERY"),
        (MAP_LOOKUP_BATCH, "MAP_LOOKUP_BATCH"),
        (MAP_UPDATE_BATCH, "MAP_UPDATE_BATCH"),
    ];
    names
        .iter()
        .find(|&&(c, _)| c as usize == cmd)
        .map_or(format!("cmd {cmd}"), |&(_, n)| n.to_string())
}

/// Times (s) per round of 10,000 allows on a fresh cgroup and of 10,000
/// updates into a map already large enough, and the calls of the last.
pub(crate) struct Growth {
    pub(crate) ours: Vec<f64>,
    pub(crate) floor: Vec<f64>,
    pub(crate) ours_calls: Calls,
    pub(crate) floor_calls: Calls,
}

pub(crate) const GROWTH_RULES: usize = 10_000;

pub(crate) fn growth(parent: &Path, o: &Options) -> Res<Growth> {
    let specs = fillers(GROWTH_RULES);
    let entries: Vec<(u64, u32)> = specs.iter().map(Spec::libvirt).collect();
    let mut g = Growth {
        ours: Vec::new(),
        floor: Vec::new(),
        ours_calls: Calls([0; hook::COMMANDS]),
        floor_calls: Calls([0; hook::COMMANDS]),
    };
    for round in 0..o.cp_rounds {
        for side in if round % 2 == 0 { [0, 1] } else { [1, 0] } {
            check_stop()?;
            if side == 0 {
                let mut cg = Cg::new(parent, &format!("cp-allows-{round}"))?;
                let path = cg.library()?;
                let start = Instant::now();
                let (r, calls) =
                    count_calls(|| specs.iter().try_for_each(|r| ours::allow(&path, r)));
                let t = start.elapsed().as_secs_f64();
                r?;
                let (count, _) = ours::state(&path)?;
                if count != GROWTH_RULES as isize {
                    return Err(
                        format!("{}: {count} rules after {GROWTH_RULES} allows", cg.p()).into(),
                    );
                }
                g.ours.push(t);
                g.ours_calls = calls;
            } else {
                let map = sys::map_create(sys::BPF_MAP_TYPE_HASH, 8, 4, GROWTH_RULES as u32, "")?;
                let start = Instant::now();
                let (r, calls) = count_calls(|| {
                    entries
                        .iter()
                        .try_for_each(|&(k, v)| sys::map_update(map.as_fd(), k, v))
                });
                let t = start.elapsed().as_secs_f64();
                r?;
                g.floor.push(t);
                g.floor_calls = calls;
            }
        }
        eprintln!(
            "control plane: 10,000 allows, round {}/{}",
            round + 1,
            o.cp_rounds
        );
    }
    Ok(g)
}

/// libvirt's C sequence for a QEMU start on a fresh cgroup, replayed
/// call for call (`libvirt_c`): `virCgroupV2DenyAllDevices` (the detect
/// query on the fresh cgroup, a 64-entry map, the seed's program loaded
/// with the verifier log on and attached), then `virCgroupV2AllowDevice`
/// per rule (a lookup and an update). Returns when the first part ended.
fn libvirt_start(cg: &mut Cg) -> Res<Instant> {
    let mut g = libvirt_c::Group::new(&cg.path);
    let r = libvirt_replay(&mut g, &QEMU_ACL);
    // What was attached is detached with the cgroup, even on error.
    cg.attached.extend(g.progfd.take());
    cg.keep.extend(g.mapfd.take());
    r
}

/// `deny_all`, then an allow per rule, on `g`; returns when the first part
/// ended.
pub(crate) fn libvirt_replay(g: &mut libvirt_c::Group, rules: &[Spec]) -> Res<Instant> {
    g.deny_all()?;
    let first = Instant::now();
    for r in rules {
        let (key, value) = r.libvirt();
        g.allow(key, value)?;
    }
    Ok(first)
}

/// QEMU's start through the library: deny all, then the default ACL.
/// Returns when the first part (`deny_all`) ended.
fn our_start(cg: &mut Cg) -> Res<Instant> {
    let path = cg.library()?;
    ours::deny_all(&path)?;
    let first = Instant::now();
    for r in &QEMU_ACL {
        ours::allow(&path, r)?;
    }
    Ok(first)
}

/// One program load alone (the verifier and the JIT), for a new map:
/// libvirt's program, or the one the library loads for a new empty table
/// (`program::table`, so this needs Linux 5.5 as the table does).
fn load_alone(ours: bool) -> Res<f64> {
    // The map stays open until the load is done.
    let (insns, _map) = if ours {
        let table = Table::create(INITIAL_MAX, &HashMap::new())?;
        (
            vircgroup_v2_devices::program::table::for_table(&table),
            table.into_map(),
        )
    } else {
        let map = libvirt_c::create_map(sys::BPF_MAP_TYPE_HASH, 8, 4, libvirt_c::INITIAL_MAP_SIZE)?;
        (libvirt_program(map.as_raw_fd()), map)
    };
    let start = Instant::now();
    let prog = if ours {
        load(&insns, "")?
    } else {
        libvirt_c::load_prog(&insns)?
    };
    let t = start.elapsed().as_secs_f64();
    drop(prog);
    Ok(t)
}

/// One side's QEMU starts: the time (s) of each, of its first part, and
/// of a program load alone made next to it.
#[derive(Default)]
pub(crate) struct Side {
    pub(crate) total: Vec<f64>,
    pub(crate) first: Vec<f64>,
    pub(crate) load: Vec<f64>,
}

/// Times (s) of each QEMU start, `starts` per side and round, each on a
/// fresh cgroup made before the clock starts, the sides taking turns (the
/// i-th of each side form a pair); the calls of one start.
pub(crate) struct Starts {
    pub(crate) ours: Side,
    pub(crate) libvirt: Side,
    pub(crate) ours_calls: Calls,
    pub(crate) libvirt_calls: Calls,
}

pub(crate) fn starts(parent: &Path, o: &Options) -> Res<Starts> {
    let mut s = Starts {
        ours: Side::default(),
        libvirt: Side::default(),
        ours_calls: Calls([0; hook::COMMANDS]),
        libvirt_calls: Calls([0; hook::COMMANDS]),
    };
    for round in 0..o.cp_rounds {
        check_stop()?;
        let mut cgs = Vec::new();
        for i in 0..o.starts {
            cgs.push([
                Cg::new(parent, &format!("cp-qemu-ours-{round}-{i}"))?,
                Cg::new(parent, &format!("cp-qemu-libvirt-{round}-{i}"))?,
            ]);
        }
        for (i, [a, b]) in cgs.iter_mut().enumerate() {
            for side in if i % 2 == 0 { [0, 1] } else { [1, 0] } {
                let start = Instant::now();
                let (r, calls) = if side == 0 {
                    count_calls(|| our_start(a))
                } else {
                    count_calls(|| libvirt_start(b))
                };
                let t = start.elapsed().as_secs_f64();
                let first = (r? - start).as_secs_f64();
                let (times, last_calls) = if side == 0 {
                    (&mut s.ours, &mut s.ours_calls)
                } else {
                    (&mut s.libvirt, &mut s.libvirt_calls)
                };
                times.total.push(t);
                times.first.push(first);
                times.load.push(load_alone(side == 0)?);
                *last_calls = calls;
            }
        }
        eprintln!(
            "control plane: QEMU starts, round {}/{}",
            round + 1,
            o.cp_rounds
        );
    }
    Ok(s)
}
