// SPDX-License-Identifier: LGPL-2.1-or-later
//! `check`, `explain` and `list` against the kernel on random chains of
//! cgroups, each with device programs of every kind the library meets:
//!
//! - systemd's (`src/core/bpf-devices.c`: its prologue, a block per
//!   `DeviceAllow=` rule comparing access, type, major and minor, the
//!   PASS jumps, `DevicePolicy=strict` with no rule as a bare deny), named
//!   `sd_devices`;
//! - runc's (`devices/devicefilter.go`: the same prologue, a block per
//!   rule ending in `mov32 r0, ACTION; exit`, a default action, its
//!   "Apache" license);
//! - crun's (`src/libcrun/ebpf.c`: blocks with their computed skip counts,
//!   `a` rules without a type test, accept or reject per block, and the
//!   wildcard block after which nothing is added);
//! - libvirt's (`program::libvirt`, its map in libvirt's encoding);
//! - this library's, in every format: 6 through the library, 5 and the
//!   earlier releases' 1-4 loaded as those releases loaded them, with
//!   their maps in their encodings.
//!
//! systemd's, runc's and crun's are attached with `BPF_F_ALLOW_MULTI`; a
//! level with one program may have it with `BPF_F_ALLOW_OVERRIDE` (a
//! program below replaces it) or, at the deepest level with programs, with
//! no flag (libvirt's way). A chain is 1-4 cgroups deep; the leaf may have
//! no program of its own (QEMU's `emulator` below libvirt's cgroup).
//!
//! Per case one probe child moves into the leaf and makes every access:
//! access(2) with R_OK, W_OK and both on nodes made in a private temporary
//! directory (never opened), and mknod for `m` (EPERM is a denial). Each
//! answer is compared with `check` and with `explain` (its result, the
//! programs it lists per cgroup, against the kernel's own attachments, and
//! each program's verdict against a model of what that kind of program
//! decides). Where every program's rules can be read, `list` must allow
//! exactly what the kernel does; otherwise it fails with `EOPNOTSUPP`.
//!
//! ```sh
//! cargo test --features testing --test effective                  # 1,000 chains
//! EFFECTIVE_CASES=10000 cargo test --features testing --test effective -- --nocapture
//! EFFECTIVE_SEED=random ... ; EFFECTIVE_REPLAY=0x... (one case by its seed)
//! ```
mod common;

use common::cases::{
    major_pool, random_major, random_minor, run_seeds, Probe, Rng, Settings, Spec, Ty, M, R, W,
};
use common::{attach_raw, privileged, remove_cgroup, Scratch};
use std::collections::{BTreeMap, HashMap};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Instant;
use vircgroup_v2_devices::api;
use vircgroup_v2_devices::insn::op::*;
use vircgroup_v2_devices::insn::reg::*;
use vircgroup_v2_devices::insn::*;
use vircgroup_v2_devices::program::{hash, legacy, libvirt_program};
use vircgroup_v2_devices::rules;
use vircgroup_v2_devices::sys;

const DEFAULT_CASES: u64 = 1000;
const DEFAULT_SEED: u64 = 0x0eff_ec71_5e00_2026;
const SHARDS: u64 = 4;

const R4: u8 = 4;
const R5: u8 = 5;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;

/// `BPF_DEVCG_ACC_*` bits of `VIRCGROUP_DEVICE_*` bits.
fn acc(perms: u8) -> i32 {
    let mut a = 0;
    if perms & R != 0 {
        a |= ACC_READ;
    }
    if perms & W != 0 {
        a |= ACC_WRITE;
    }
    if perms & M != 0 {
        a |= ACC_MKNOD;
    }
    a
}

fn dev_type(ty: u8) -> i32 {
    if ty == b'b' {
        DEV_BLOCK
    } else {
        DEV_CHAR
    }
}

fn mov32_reg(dst: u8, src: u8) -> Insn {
    Insn::raw(BPF_ALU | BPF_MOV | BPF_X, dst, src, 0, 0)
}

fn mov32_imm(dst: u8, imm: i32) -> Insn {
    Insn::raw(BPF_ALU | BPF_MOV | BPF_K, dst, 0, 0, imm)
}

/// The prologue systemd, runc and crun share: type in r2, access in r3,
/// major in r4, minor in r5.
fn prologue() -> Vec<Insn> {
    vec![
        ldx_mem(BPF_W, R2, R1, 0),
        alu32_imm(BPF_AND, R2, 0xffff),
        ldx_mem(BPF_W, R3, R1, 0),
        alu32_imm(BPF_RSH, R3, 16),
        ldx_mem(BPF_W, R4, R1, 4),
        ldx_mem(BPF_W, R5, R1, 8),
    ]
}

/// A device program of one kind, with what it was made from.
#[derive(Debug, Clone)]
enum Kind {
    /// `DeviceAllow=` rules (b or c); `DevicePolicy=strict` with none is
    /// a bare deny.
    Systemd {
        rules: Vec<Spec>,
        deny_everything: bool,
    },
    /// runc: rules (b or c) of the action opposite to the default.
    Runc {
        default_allow: bool,
        rules: Vec<Spec>,
    },
    /// crun: (accept, rule of type a, b or c) blocks, first match wins.
    Crun { blocks: Vec<(bool, Spec)> },
    /// libvirt's program: its map written rule by rule (one value per
    /// numbers, the last written).
    Libvirt { rules: Vec<Spec> },
    /// This library's, format 1-6.
    Ours { format: u32, rules: Vec<Spec> },
}

const PASS_JUMP_OFF: i16 = 4096;

/// systemd's program, as `bpf_devices_cgroup_init`,
/// `bpf_prog_allow_list_*` and `bpf_devices_apply_policy` build it.
fn systemd_program(rules: &[Spec], deny_everything: bool) -> Vec<Insn> {
    if deny_everything {
        return vec![mov64_imm(R0, 0), exit()];
    }
    let mut p = prologue();
    for s in rules {
        let access = acc(s.perms);
        let ty = dev_type(s.ty);
        let block: Vec<Insn> = match (s.major, s.minor) {
            (Some(ma), Some(mi)) => vec![
                mov32_reg(R1, R3),
                alu32_imm(BPF_AND, R1, access),
                jmp_reg(BPF_JNE, R1, R3, 4),
                jmp_imm(BPF_JNE, R2, ty, 3),
                jmp_imm(BPF_JNE, R4, ma as i32, 2),
                jmp_imm(BPF_JNE, R5, mi as i32, 1),
                ja(PASS_JUMP_OFF),
            ],
            (Some(ma), None) => vec![
                mov32_reg(R1, R3),
                alu32_imm(BPF_AND, R1, access),
                jmp_reg(BPF_JNE, R1, R3, 3),
                jmp_imm(BPF_JNE, R2, ty, 2),
                jmp_imm(BPF_JNE, R4, ma as i32, 1),
                ja(PASS_JUMP_OFF),
            ],
            _ => vec![
                mov32_reg(R1, R3),
                alu32_imm(BPF_AND, R1, access),
                jmp_reg(BPF_JNE, R1, R3, 2),
                jmp_imm(BPF_JNE, R2, ty, 1),
                ja(PASS_JUMP_OFF),
            ],
        };
        if access == ACC_READ | ACC_WRITE | ACC_MKNOD {
            p.extend_from_slice(&block[3..]);
        } else {
            p.extend(block);
        }
    }
    p.extend([mov64_imm(R0, 0), ja(1)]);
    let n = p.len();
    for (off, i) in p.iter_mut().enumerate() {
        if i.code == BPF_JMP | BPF_JA && i.off == PASS_JUMP_OFF {
            i.off = (n - off - 1) as i16;
        }
    }
    p.extend([mov64_imm(R0, 1), exit()]);
    p
}

/// runc's program, as `deviceFilter` builds it from clean rules.
fn runc_program(default_allow: bool, rules: &[Spec]) -> Vec<Insn> {
    let mut p = prologue();
    for s in rules {
        let access = acc(s.perms);
        let has_access = access != ACC_READ | ACC_WRITE | ACC_MKNOD;
        // Each condition jumps to the next block (the symbol cilium/ebpf
        // resolves): past this block's two-instruction accept.
        let mut block = vec![jmp_imm(BPF_JNE, R2, dev_type(s.ty), 0)];
        if has_access {
            block.push(mov32_reg(R1, R3));
            block.push(alu32_imm(BPF_AND, R1, access));
            block.push(jmp_reg(BPF_JNE, R1, R3, 0));
        }
        if let Some(ma) = s.major {
            block.push(jmp_imm(BPF_JNE, R4, ma as i32, 0));
        }
        if let Some(mi) = s.minor {
            block.push(jmp_imm(BPF_JNE, R5, mi as i32, 0));
        }
        block.extend([mov32_imm(R0, i32::from(!default_allow)), exit()]);
        let len = block.len();
        for (j, i) in block.iter_mut().enumerate() {
            if i.code & 0x07 == BPF_JMP && i.code & 0xf0 == BPF_JNE {
                i.off = (len - j - 1) as i16;
            }
        }
        p.extend(block);
    }
    p.extend([mov32_imm(R0, i32::from(default_allow)), exit()]);
    p
}

/// Whether a crun block has no condition (`HAS_WILDCARD`).
fn crun_wildcard(s: &Spec) -> bool {
    s.ty == b'a' && s.major.is_none() && s.minor.is_none() && s.perms == R | W | M
}

/// crun's program, as `bpf_program_init_dev`, `bpf_program_append_dev`
/// and `bpf_program_complete_dev` build it.
fn crun_program(blocks: &[(bool, Spec)]) -> Vec<Insn> {
    let mut p = prologue();
    for (accept, s) in blocks {
        let access = acc(s.perms);
        let has_type = s.ty != b'a';
        let has_access = access != ACC_READ | ACC_WRITE | ACC_MKNOD;
        let mut n = i16::from(has_type)
            + if has_access { 3 } else { 0 }
            + i16::from(s.major.is_some())
            + i16::from(s.minor.is_some())
            + 1;
        if has_type {
            p.push(jmp_imm(BPF_JNE, R2, dev_type(s.ty), n));
            n -= 1;
        }
        if has_access {
            p.push(mov32_reg(R1, R3));
            p.push(alu32_imm(BPF_AND, R1, access));
            p.push(jmp_reg(BPF_JNE, R1, R3, n - 2));
            n -= 3;
        }
        if let Some(ma) = s.major {
            p.push(jmp_imm(BPF_JNE, R4, ma as i32, n));
            n -= 1;
        }
        if let Some(mi) = s.minor {
            p.push(jmp_imm(BPF_JNE, R5, mi as i32, n));
        }
        p.extend([mov64_imm(R0, i32::from(*accept)), exit()]);
        if crun_wildcard(s) {
            return p;
        }
    }
    p.extend([mov64_imm(R0, 0), exit()]);
    p
}

/// Whether rule `s` names the device and holds every permission asked.
fn grants(s: &Spec, ty: Ty, ma: u32, mi: u32, perms: u8) -> bool {
    (s.ty == b'a' || s.ty == ty.letter() as u8)
        && s.major.is_none_or(|m| m == ma)
        && s.minor.is_none_or(|m| m == mi)
        && s.perms & perms == perms
}

impl Kind {
    /// What this program decides, from what it was made of.
    fn decides(&self, ty: Ty, ma: u32, mi: u32, perms: u8) -> bool {
        match self {
            Kind::Systemd {
                rules,
                deny_everything,
            } => !deny_everything && rules.iter().any(|s| grants(s, ty, ma, mi, perms)),
            Kind::Runc {
                default_allow,
                rules,
            } => {
                if rules.iter().any(|s| grants(s, ty, ma, mi, perms)) {
                    !default_allow
                } else {
                    *default_allow
                }
            }
            Kind::Crun { blocks } => {
                for (accept, s) in blocks {
                    if grants(s, ty, ma, mi, perms) {
                        return *accept;
                    }
                    if crun_wildcard(s) {
                        break;
                    }
                }
                false
            }
            Kind::Libvirt { rules } => {
                let mut last: BTreeMap<(Option<u32>, Option<u32>), Spec> = BTreeMap::new();
                for s in rules {
                    last.insert((s.major, s.minor), *s);
                }
                last.values().any(|s| grants(s, ty, ma, mi, perms))
            }
            Kind::Ours { rules, .. } => {
                // Allows accumulate per type and numbers (r then w is rw).
                let mut merged: BTreeMap<(u8, Option<u32>, Option<u32>), u8> = BTreeMap::new();
                for s in rules {
                    *merged.entry((s.ty, s.major, s.minor)).or_insert(0) |= s.perms;
                }
                merged.iter().any(|(&(ty2, major, minor), &p)| {
                    let s = Spec {
                        ty: ty2,
                        major,
                        minor,
                        perms: p,
                    };
                    grants(&s, ty, ma, mi, perms)
                })
            }
        }
    }

    /// `explain`'s OWNER for it.
    fn owner(&self) -> String {
        match self {
            Kind::Systemd { .. } => "other:sd_devices".into(),
            Kind::Runc { .. } | Kind::Crun { .. } => "other:".into(),
            Kind::Libvirt { .. } => "libvirt".into(),
            Kind::Ours { format: 6, .. } => format!("vircgroup-v2-devices/{}", library_format()),
            Kind::Ours { format, .. } => format!("vircgroup-v2-devices/{format}"),
        }
    }

    /// Whether `list` can read its rules.
    fn readable(&self) -> bool {
        matches!(self, Kind::Libvirt { .. } | Kind::Ours { .. })
    }
}

/// The format the library attaches here: 6, or 5 on a kernel emulated
/// as older than 5.5 (`VCG2_EMULATE_KERNEL`), which has no table.
fn library_format() -> u32 {
    match sys::hook::emulated() {
        Some(k) if k < sys::Since(5, 5) => 5,
        _ => 6,
    }
}

/// How a level's programs are attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Multi,
    Override,
    /// No flag: nothing can be attached below.
    Exclusive,
}

#[derive(Debug, Clone)]
struct Level {
    mode: Mode,
    programs: Vec<Kind>,
}

#[derive(Debug, Clone)]
struct Case {
    seed: u64,
    levels: Vec<Level>,
    devices: Vec<(u32, u32)>,
}

/// A rule on the case's numbers: mostly exact, sometimes a wildcard.
fn spec(rng: &mut Rng, majors: &[u32], minors: &[u32], types: &[u8]) -> Spec {
    Spec {
        ty: rng.pick(types),
        major: (!rng.percent(20)).then(|| rng.pick(majors)),
        minor: (!rng.percent(25)).then(|| rng.pick(minors)),
        perms: if rng.percent(20) {
            R | W | M
        } else {
            rng.range(1, 7) as u8
        },
    }
}

impl Case {
    fn new(seed: u64) -> Case {
        let mut rng = Rng(seed);
        let majors: Vec<u32> = (0..rng.range(1, 3))
            .map(|_| {
                if rng.percent(30) {
                    random_major(&mut rng)
                } else {
                    rng.pick(major_pool())
                }
            })
            .filter(|&m| m != 0)
            .chain([1])
            .collect();
        let minors: Vec<u32> = (0..rng.range(1, 3))
            .map(|_| random_minor(&mut rng))
            .collect();
        let depth = rng.range(1, 4) as usize;
        // The leaf may have no program of its own.
        let bare_leaf = depth > 1 && rng.percent(40);
        let mut levels = Vec::new();
        for l in 0..depth {
            let deepest = l + 1 == depth || (bare_leaf && l + 2 == depth);
            if bare_leaf && l + 1 == depth {
                levels.push(Level {
                    mode: Mode::Multi,
                    programs: Vec::new(),
                });
                continue;
            }
            let n = match rng.below(100) {
                0..=19 => 0,
                20..=74 => 1,
                _ => 2,
            };
            let mut programs = Vec::new();
            let r = |rng: &mut Rng, types: &[u8]| spec(rng, &majors, &minors, types);
            for _ in 0..n {
                let many = |rng: &mut Rng| rng.range(0, 5) as usize;
                let k = match rng.below(100) {
                    0..=24 => {
                        // DeviceAllow= names a device, a major or a type
                        // (no `*:m`), and DevicePolicy=closed always
                        // allows a few devices itself.
                        let rules = (0..many(&mut rng) + 1)
                            .map(|_| {
                                let s = r(&mut rng, b"bc");
                                Spec {
                                    minor: s.minor.filter(|_| s.major.is_some()),
                                    ..s
                                }
                            })
                            .collect();
                        Kind::Systemd {
                            rules,
                            deny_everything: rng.percent(5),
                        }
                    }
                    25..=44 => {
                        let rules = (0..many(&mut rng)).map(|_| r(&mut rng, b"bc")).collect();
                        Kind::Runc {
                            default_allow: rng.percent(25),
                            rules,
                        }
                    }
                    45..=64 => {
                        let blocks = (0..many(&mut rng) + 1)
                            .map(|_| {
                                let mut s = r(&mut rng, b"abc");
                                if rng.percent(5) {
                                    s = Spec {
                                        ty: b'a',
                                        major: None,
                                        minor: None,
                                        perms: R | W | M,
                                    };
                                }
                                (rng.percent(75), s)
                            })
                            .collect();
                        Kind::Crun { blocks }
                    }
                    65..=74 => Kind::Libvirt {
                        rules: (0..many(&mut rng) + 1)
                            .map(|_| r(&mut rng, b"abc"))
                            .collect(),
                    },
                    _ => Kind::Ours {
                        format: if rng.percent(50) {
                            6
                        } else {
                            rng.range(1, 5) as u32
                        },
                        rules: (0..many(&mut rng) + 1)
                            .map(|_| r(&mut rng, b"bc"))
                            .collect(),
                    },
                };
                programs.push(k);
            }
            // Format 6 comes from the library, which adopts what it
            // recognises on a cgroup: it goes first on its level, once, and
            // never with OVERRIDE (the library does not attach with it).
            let mut seen6 = false;
            for p in programs.iter_mut() {
                if let Kind::Ours { format, .. } = p {
                    if *format == 6 && std::mem::replace(&mut seen6, true) {
                        *format = 5;
                    }
                }
            }
            programs.sort_by_key(|p| !matches!(p, Kind::Ours { format: 6, .. }));
            let mode = if programs.len() == 1 && deepest && rng.percent(40) {
                Mode::Exclusive
            } else if programs.len() == 1 && !seen6 && rng.percent(25) {
                Mode::Override
            } else {
                Mode::Multi
            };
            levels.push(Level { mode, programs });
        }
        let mut devices = Vec::new();
        for _ in 0..rng.range(3, 6) {
            let d = match rng.below(100) {
                0..=79 => (rng.pick(&majors), rng.pick(&minors)),
                80..=89 => (rng.pick(&majors), random_minor(&mut rng)),
                _ => (random_major(&mut rng), rng.pick(&minors)),
            };
            if d != (0, 0) && !devices.contains(&d) {
                devices.push(d);
            }
        }
        Case {
            seed,
            levels,
            devices,
        }
    }

    /// The indexes (level, program) the kernel runs for a process in the
    /// leaf: a level's programs count when nothing below counted yet, or
    /// when the level is ALLOW_MULTI.
    fn effective(&self) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for (l, level) in self.levels.iter().enumerate().rev() {
            if out.is_empty() || level.mode == Mode::Multi {
                out.extend((0..level.programs.len()).map(|p| (l, p)));
            }
        }
        out
    }
}

fn flags(mode: Mode) -> u32 {
    match mode {
        Mode::Multi => sys::BPF_F_ALLOW_MULTI,
        Mode::Override => sys::BPF_F_ALLOW_OVERRIDE,
        Mode::Exclusive => 0,
    }
}

fn load(insns: &[Insn], license: &str, name: &str) -> OwnedFd {
    sys::prog_load(sys::BPF_PROG_TYPE_CGROUP_DEVICE, insns, license, name).expect("load")
}

/// This library's map value of `rules` (merged per numbers).
fn our_entries(rules: &[Spec]) -> HashMap<u64, u32> {
    let mut map: HashMap<u64, u32> = HashMap::new();
    for s in rules {
        *map.entry(s.rule().key()).or_insert(0) |= s.rule().value();
    }
    map
}

/// Loads an earlier format (1-5) as its release did: its maps in its
/// encoding, its program and name.
fn load_ours(format: u32, rules: &[Spec]) -> OwnedFd {
    let entries = our_entries(rules);
    let map = sys::map_create(sys::BPF_MAP_TYPE_HASH, 8, 4, 64, "").unwrap();
    for (&k, &v) in &entries {
        let v = if format == 1 { v & 0x0707 } else { v };
        sys::map_update(map.as_fd(), k, v).unwrap();
    }
    let index_entries = if format == 5 {
        vircgroup_v2_devices::hash::layout::INDEX_ENTRIES
    } else {
        legacy::INDEX_ENTRIES
    };
    let index = sys::map_create(sys::BPF_MAP_TYPE_ARRAY, 4, 4, index_entries, "").unwrap();
    let words: Vec<(u32, u32)> = if format == 3 {
        // Every bit: every lookup is made.
        (0..vircgroup_v2_devices::hash::layout::INDEX_SLOTS)
            .map(|s| (s, u32::MAX))
            .collect()
    } else {
        vircgroup_v2_devices::hash::layout::index_words(&entries)
    };
    for (slot, w) in words {
        sys::map_update(index.as_fd(), slot, w).unwrap();
    }
    let (m, i) = (map.as_raw_fd(), index.as_raw_fd());
    if format == 5 {
        load(&hash::hash_program(m, i), "GPL", hash::NAME)
    } else {
        let f = legacy::FORMATS[format as usize - 1];
        load(&f.program(m, i), "GPL", legacy::NAME)
    }
}

/// A chain of nested cgroups for one case, removed (deepest first) on drop.
struct Chain {
    paths: Vec<PathBuf>,
    _top: Scratch,
}

impl Drop for Chain {
    fn drop(&mut self) {
        for p in self.paths.iter().skip(1).rev() {
            let _ = api::remove_prog(p.to_str().unwrap());
            remove_cgroup(p);
        }
    }
}

/// An allow-all program attached with ALLOW_MULTI to give a level that
/// mode before the library attaches its own there; detached after.
fn multi_placeholder(path: &Path) -> OwnedFd {
    let p = load(&[mov64_imm(R0, 1), exit()], "GPL", "placeholder");
    attach_raw(path, &p, sys::BPF_F_ALLOW_MULTI);
    p
}

fn detach(path: &Path, prog: &OwnedFd) {
    let cg = std::fs::File::open(path).unwrap();
    sys::prog_detach(cg.as_fd(), prog.as_fd(), sys::BPF_CGROUP_DEVICE).unwrap();
}

/// Sets the case up; the program ids per (level, program).
/// Program ids by (level, index on the level).
type Ids = HashMap<(usize, usize), u32>;

fn build(mount: &Path, case: &Case) -> Result<(Chain, Ids), String> {
    let top = Scratch::new(mount);
    let mut paths = vec![top.path.clone()];
    for l in 1..case.levels.len() {
        let p = paths[l - 1].join(format!("l{l}"));
        std::fs::create_dir(&p).map_err(|e| format!("mkdir {}: {e}", p.display()))?;
        paths.push(p);
    }
    let chain = Chain { paths, _top: top };
    let mut ids = HashMap::new();
    for (l, level) in case.levels.iter().enumerate() {
        let path = &chain.paths[l];
        let f = flags(level.mode);
        for (k, prog) in level.programs.iter().enumerate() {
            let fd = match prog {
                Kind::Systemd {
                    rules,
                    deny_everything,
                } => load(
                    &systemd_program(rules, *deny_everything),
                    "GPL",
                    "sd_devices",
                ),
                Kind::Runc {
                    default_allow,
                    rules,
                } => load(&runc_program(*default_allow, rules), "Apache", ""),
                Kind::Crun { blocks } => load(&crun_program(blocks), "GPL", ""),
                Kind::Libvirt { rules } => {
                    let map = sys::map_create(sys::BPF_MAP_TYPE_HASH, 8, 4, 64, "").unwrap();
                    for s in rules {
                        let n = |n: Option<u32>| n.map_or(-1, |n| n as i32);
                        sys::map_update(
                            map.as_fd(),
                            rules::get_key(n(s.major), n(s.minor)),
                            rules::get_perms(i32::from(s.perms), s.ty),
                        )
                        .unwrap();
                    }
                    load(&libvirt_program(map.as_raw_fd()), "GPL", "")
                }
                Kind::Ours { format: 6, rules } => {
                    let p = path.to_str().unwrap();
                    // The library attaches with the level's flags: an
                    // ALLOW_MULTI placeholder first where it must be MULTI.
                    let placeholder =
                        (f == sys::BPF_F_ALLOW_MULTI && k == 0).then(|| multi_placeholder(path));
                    if f == sys::BPF_F_ALLOW_OVERRIDE {
                        return Err("format 6 is never generated with OVERRIDE".into());
                    }
                    api::deny_all(p).map_err(|e| format!("deny_all: {e}"))?;
                    for s in rules {
                        api::allow(p, &s.rule()).map_err(|e| format!("allow {s}: {e}"))?;
                    }
                    if let Some(ph) = placeholder {
                        detach(path, &ph);
                    }
                    let attached = vircgroup_v2_devices::cgroup::Cgroup::open(p)
                        .and_then(|c| c.attached())
                        .unwrap();
                    let id = *attached.ids.last().unwrap();
                    ids.insert((l, k), id);
                    continue;
                }
                Kind::Ours { format, rules } => load_ours(*format, rules),
            };
            attach_raw(path, &fd, f);
            ids.insert((l, k), common::prog_id(&fd));
        }
    }
    Ok((chain, ids))
}

/// The accesses of one device and type: (kind, perms).
const KINDS: [(&str, u8); 4] = [("ar", R), ("aw", W), ("arw", R | W), ("m", M)];

#[derive(Debug, Default)]
struct Stats {
    cases: u64,
    probes: u64,
    allowed: u64,
    denied: u64,
    programs: BTreeMap<String, u64>,
    deepest: usize,
    listed: u64,
    unlistable: u64,
}

struct Worker {
    mount: PathBuf,
    nodes: common::Nodes,
    made: std::collections::HashSet<(Ty, u32, u32)>,
    fresh: u64,
    stats: Stats,
}

impl Worker {
    fn node(&mut self, ty: Ty, ma: u32, mi: u32) -> String {
        let name = format!("{}-{ma}-{mi}", ty.letter());
        if self.made.insert((ty, ma, mi)) {
            self.nodes.node(&name, ty.letter(), ma.into(), mi.into())
        } else {
            self.nodes.dir.join(name).to_str().unwrap().to_string()
        }
    }

    fn run(&mut self, case: &Case) -> Vec<String> {
        let (chain, ids) = match build(&self.mount, case) {
            Ok(b) => b,
            Err(e) => return vec![format!("setting up: {e}")],
        };
        let leaf = chain.paths.last().unwrap().to_str().unwrap().to_string();
        let effective = case.effective();
        let mut out = Vec::new();

        // The accesses, probed by one child in the leaf.
        let mut accesses = Vec::new();
        for &(ma, mi) in &case.devices {
            for ty in [Ty::Block, Ty::Char] {
                for (kind, perms) in KINDS {
                    let arg = if kind == "m" {
                        self.fresh += 1;
                        let path = self.nodes.fresh(&format!("mknod-{}", self.fresh));
                        format!("mknod:{}:{ma}:{mi}:{path}", ty.letter())
                    } else {
                        format!("{kind}:{}", self.node(ty, ma, mi))
                    };
                    accesses.push((ty, ma, mi, perms, arg));
                }
            }
        }
        let args: Vec<String> = accesses.iter().map(|a| a.4.clone()).collect();
        let results = Probe::start(&[], Path::new(&leaf), &args).results();

        let list = api::rules_in_force(&leaf);
        let readable = effective
            .iter()
            .all(|&(l, p)| case.levels[l].programs[p].readable());
        match (&list, readable) {
            (Ok(_), true) => self.stats.listed += 1,
            (Err(e), false) if e.errno() == libc::EOPNOTSUPP => self.stats.unlistable += 1,
            (Ok(_), false) => {
                out.push("list answered, but a program's rules cannot be read".into())
            }
            (Err(e), _) => out.push(format!("list failed: {e}")),
        }

        for ((ty, ma, mi, perms, _), result) in accesses.iter().zip(&results) {
            let kernel = match result.as_str() {
                "EPERM" => false,
                "ok" => true,
                other => {
                    out.push(format!(
                        "{} {ma}:{mi} {perms}: the probe got {other}",
                        ty.letter()
                    ));
                    continue;
                }
            };
            self.stats.probes += 1;
            self.stats.allowed += u64::from(kernel);
            self.stats.denied += u64::from(!kernel);
            let what = format!(
                "{} {ma}:{mi} {}",
                ty.letter(),
                common::cases::perms_text(*perms)
            );
            let rule = common::rule(ty.letter() as u8, *ma as i32, *mi as i32, i32::from(*perms));
            match api::check(&leaf, &rule) {
                Ok(c) if c == kernel => {}
                Ok(c) => out.push(format!("{what}: kernel {kernel}, check {c}")),
                Err(e) => out.push(format!("{what}: check failed: {e}")),
            }
            match api::explain(&leaf, &rule) {
                Ok(e) => {
                    if e.allowed != kernel {
                        out.push(format!("{what}: kernel {kernel}, explain {}", e.text()));
                    }
                    let text = e.text();
                    if !text.ends_with(if kernel {
                        "result=allowed\n"
                    } else {
                        "result=denied\n"
                    }) {
                        out.push(format!("{what}: explain's text: {text}"));
                    }
                    // Its programs: the ones the model expects, each on its
                    // cgroup, root first, each with the verdict its kind decides.
                    let mut want: Vec<(usize, u32, String, bool)> = effective
                        .iter()
                        .map(|&(l, p)| {
                            let k = &case.levels[l].programs[p];
                            (l, ids[&(l, p)], k.owner(), k.decides(*ty, *ma, *mi, *perms))
                        })
                        .collect();
                    want.sort();
                    let mut got: Vec<(usize, u32, String, bool)> = e
                        .programs
                        .iter()
                        .map(|v| {
                            let l = chain
                                .paths
                                .iter()
                                .position(|p| *p == v.cgroup)
                                .unwrap_or(99);
                            (l, v.id, v.owner.to_string(), v.allowed)
                        })
                        .collect();
                    let levels: Vec<usize> = got.iter().map(|g| g.0).collect();
                    if levels.windows(2).any(|w| w[0] > w[1]) {
                        out.push(format!("{what}: explain is not root first: {text}"));
                    }
                    got.sort();
                    if got != want {
                        out.push(format!("{what}: explain lists {got:?}, the model {want:?}"));
                    }
                }
                Err(e) => out.push(format!("{what}: explain failed: {e}")),
            }
            if let Ok(Some(rules)) = &list {
                let listed = rules.iter().any(|r| {
                    r.ty.letter() == ty.letter()
                        && r.major.is_none_or(|m| m == *ma)
                        && r.minor.is_none_or(|m| m == *mi)
                        && r.perms & i32::from(*perms) == i32::from(*perms)
                });
                if listed != kernel {
                    out.push(format!("{what}: kernel {kernel}, list {rules:?}"));
                }
            } else if let Ok(None) = &list {
                if !kernel {
                    out.push(format!("{what}: kernel denied, list says unrestricted"));
                }
            }
        }
        for &(l, p) in &effective {
            *self
                .stats
                .programs
                .entry(case.levels[l].programs[p].owner())
                .or_default() += 1;
        }
        self.stats.deepest = self.stats.deepest.max(case.levels.len());
        self.stats.cases += 1;
        drop(chain);
        out
    }
}

fn report(run: &str, case: &Case, _shrunk: &Case) -> String {
    format!(
        "EFFECTIVE DISAGREEMENT ({run})\ncase seed {:#x}; replay: EFFECTIVE_REPLAY={:#x} \
         cargo test --features testing --test effective -- --nocapture\nchain: {:#?}\n\
         devices: {:?}\ndisagreements:\n",
        case.seed, case.seed, case.levels, case.devices
    )
}

fn shard(k: u64) {
    let Some(mount) = privileged() else { return };
    let s = Settings::from_env("EFFECTIVE", DEFAULT_CASES, DEFAULT_SEED);
    let seeds = s.shard(k, SHARDS);
    if seeds.is_empty() {
        return;
    }
    let start = Instant::now();
    let mut worker = Worker {
        mount,
        nodes: common::Nodes::new(),
        made: Default::default(),
        fresh: 0,
        stats: Stats::default(),
    };
    run_seeds(
        &seeds,
        Case::new,
        |c| worker.run(c),
        |c, _| c.clone(),
        report,
    );
    let st = &worker.stats;
    println!(
        "effective shard {k}/{SHARDS}: {} chains ({}), 0 disagreements in {:.1?}: \
         {} kernel probes ({} allowed, {} denied), each compared with check and explain; \
         programs run: {:?}; deepest chain {}; list compared on {} chains, \
         refused (a foreign program) on {}",
        st.cases,
        s.run_name(),
        start.elapsed(),
        st.probes,
        st.allowed,
        st.denied,
        st.programs,
        st.deepest,
        st.listed,
        st.unlistable
    );
    if s.replay.is_none() && st.cases >= 200 {
        assert!(st.allowed > 0 && st.denied > 0, "{st:?}");
        for owner in [
            "other:sd_devices",
            "other:",
            "libvirt",
            "vircgroup-v2-devices/1",
            "vircgroup-v2-devices/2",
            "vircgroup-v2-devices/3",
            "vircgroup-v2-devices/4",
            "vircgroup-v2-devices/5",
            "vircgroup-v2-devices/6",
        ]
        .into_iter()
        .filter(|o| library_format() == 6 || *o != "vircgroup-v2-devices/6")
        {
            assert!(
                st.programs.contains_key(owner),
                "no {owner} program ran: {st:?}"
            );
        }
        assert!(
            st.deepest == 4 && st.listed > 0 && st.unlistable > 0,
            "{st:?}"
        );
    }
}

#[test]
fn effective_shard_0() {
    shard(0);
}

#[test]
fn effective_shard_1() {
    shard(1);
}

#[test]
fn effective_shard_2() {
    shard(2);
}

#[test]
fn effective_shard_3() {
    shard(3);
}

/// The generators make the instruction sequences their sources make: the
/// listings below were worked out by hand from those sources.
#[test]
fn generated_programs_have_their_sources_shape() {
    let c13r = Spec {
        ty: b'c',
        major: Some(1),
        minor: Some(3),
        perms: R,
    };
    // systemd, one device rule: prologue 6, block 7, post 2, exit 2; the
    // PASS jump lands on "r0 = 1".
    let p = systemd_program(&[c13r], false);
    assert_eq!(p.len(), 17);
    assert_eq!(
        (p[12].code, 12 + 1 + p[12].off as usize),
        (BPF_JMP | BPF_JA, 15)
    );
    assert_eq!(p[15], mov64_imm(R0, 1));
    // runc: the block's jumps go to the default.
    let p = runc_program(false, &[c13r]);
    assert_eq!(p.len(), 6 + 8 + 2);
    for (at, i) in p.iter().enumerate().take(12).skip(6) {
        if i.code & 0x07 == BPF_JMP && i.code & 0xf0 == BPF_JNE {
            assert_eq!(at + 1 + i.off as usize, 14, "jump at {at}");
        }
    }
    // crun: the same block shape; the wildcard block ends the program.
    let all = Spec {
        ty: b'a',
        major: None,
        minor: None,
        perms: R | W | M,
    };
    let p = crun_program(&[(true, c13r), (true, all), (false, c13r)]);
    assert_eq!(p.len(), 6 + 8 + 2);
    for (at, i) in p.iter().enumerate().take(12).skip(6) {
        if i.code & 0x07 == BPF_JMP && i.code & 0xf0 == BPF_JNE {
            assert_eq!(at + 1 + i.off as usize, 14, "jump at {at}");
        }
    }
}

/// A program whose answer cannot be established: EOPNOTSUPP naming it,
/// from check, explain and list; never a guess.
#[test]
fn a_program_that_calls_a_helper_is_named_not_guessed() {
    let Some(mount) = privileged() else { return };
    let cg = Scratch::new(&mount);
    // r0 = bpf_get_prandom_u32() & 1
    let p = load(&[call(7), alu64_imm(BPF_AND, R0, 1), exit()], "GPL", "coin");
    attach_raw(&cg.path, &p, sys::BPF_F_ALLOW_MULTI);
    let id = common::prog_id(&p);
    let rule = common::rule(b'c', 1, 3, 1);
    for e in [
        api::check(cg.p(), &rule).map(|_| ()).unwrap_err(),
        api::explain(cg.p(), &rule).map(|_| ()).unwrap_err(),
        api::list(cg.p()).map(|_| ()).unwrap_err(),
    ] {
        assert_eq!(e.errno(), libc::EOPNOTSUPP, "{e}");
        assert!(
            e.message().contains(&format!("device program {id} 'coin'")),
            "{e}"
        );
    }
    let e = api::check(cg.p(), &rule).unwrap_err();
    assert!(e.message().contains("a helper call"), "{e}");
}

/// The transcript of docs/why-denied.md: a VM's cgroups as libvirt makes
/// them without systemd (`machine/qemu-1-vm.libvirt-qemu`, QEMU in
/// `…/emulator`), this library's program on the VM's cgroup, then a
/// systemd-style `DevicePolicy=closed` program on `machine` (attached with
/// ALLOW_MULTI), and the admin's commands on the path from
/// /proc/PID/cgroup. Run by hand (it uses `machine` at the cgroup2 root,
/// refusing if it exists):
/// `cargo test --features testing --test effective why_denied_transcript -- --ignored --nocapture`
#[test]
#[ignore]
fn why_denied_transcript() {
    use std::process::Command;
    let Some(mount) = privileged() else { return };
    let machine = mount.join("machine");
    assert!(
        !machine.exists(),
        "{} exists: not touching it",
        machine.display()
    );
    let vm = machine.join("qemu-1-vm.libvirt-qemu");
    let emulator = vm.join("emulator");
    std::fs::create_dir_all(&emulator).unwrap();
    struct Cleanup(Vec<PathBuf>, Option<std::process::Child>);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            if let Some(c) = &mut self.1 {
                let _ = c.kill();
                let _ = c.wait();
            }
            for p in &self.0 {
                let _ = api::remove_prog(p.to_str().unwrap());
                remove_cgroup(p);
            }
        }
    }
    let mut cleanup = Cleanup(vec![emulator.clone(), vm.clone(), machine.clone()], None);
    let tool = env!("CARGO_BIN_EXE_vircgroup-devices");
    let show = |args: &[&str]| {
        let out = Command::new(tool).args(args).output().unwrap();
        let quoted: Vec<String> = args
            .iter()
            .map(|a| {
                if a.contains([' ', '*', '\\']) {
                    format!("'{a}'")
                } else {
                    a.to_string()
                }
            })
            .collect();
        println!("# vircgroup-devices {}", quoted.join(" "));
        // As a terminal shows them: the note comes before the answer.
        print!("{}", String::from_utf8_lossy(&out.stderr));
        print!("{}", String::from_utf8_lossy(&out.stdout));
        if out.status.code() != Some(0) {
            println!("(exit status {})", out.status.code().unwrap());
        }
    };
    // libvirt: every device denied, its default ACL, the ptys, and a
    // hot-plugged loop device.
    let vm_path = vm.to_str().unwrap();
    api::deny_all(vm_path).unwrap();
    for r in [
        "c 1:3 rw",
        "c 1:5 rw",
        "c 1:7 rw",
        "c 1:8 rw",
        "c 1:9 rw",
        "c 5:2 rw",
        "c 10:232 rw",
        "c 136:* rw",
        "b 7:0 rw",
    ] {
        api::allow(vm_path, &r.parse().unwrap()).unwrap();
    }
    // QEMU, as far as cgroups go: a process in …/emulator.
    let qemu = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo $$ > {}/cgroup.procs && exec sleep 300",
            emulator.display()
        ))
        .spawn()
        .unwrap();
    let pid = qemu.id();
    cleanup.1 = Some(qemu);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let line = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let v2 = line
        .lines()
        .find(|l| l.starts_with("0::"))
        .unwrap()
        .to_string();
    let nodes = common::Nodes::new();
    let sda = nodes.node("sda", 'b', 8, 0);
    let loop0 = nodes.node("loop0", 'b', 7, 0);
    let try_open = |node: &str| {
        // In QEMU's cgroup, as QEMU would open it (denied here: the
        // device is never reached).
        assert!(
            !api::check(emulator.to_str().unwrap(), &"b 7:0 r".parse().unwrap()).unwrap_or(true)
                || node.ends_with("sda")
        );
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "echo $$ > {}/cgroup.procs && exec dd if={node} of=/dev/null count=0 status=none",
                emulator.display()
            ))
            .output()
            .unwrap();
        println!("# (in QEMU's cgroup) dd if={node} of=/dev/null count=0");
        print!("{}", String::from_utf8_lossy(&out.stderr));
    };
    println!("--- 1: the VM's own program");
    println!("# cat /proc/{pid}/cgroup");
    print!("{line}");
    assert!(!api::check(emulator.to_str().unwrap(), &"b 8:0 r".parse().unwrap()).unwrap());
    try_open(&sda);
    show(&["check", &v2, "b 8:0 r"]);
    show(&["list", &v2]);
    show(&["explain", &v2, "b 8:0 r"]);
    show(&["list", "--json", "machine/qemu-1-vm.libvirt-qemu/emulator"]);
    println!("--- 2: DevicePolicy=closed on machine (systemd's program, ALLOW_MULTI)");
    let rules: Vec<Spec> = [
        "c 1:3 rw",
        "c 1:5 rw",
        "c 1:7 rw",
        "c 1:8 rw",
        "c 1:9 rw",
        "c 5:0 rw",
        "c 5:2 rw",
        "c 136:* rw",
        "c 10:232 rw",
    ]
    .iter()
    .map(|t| {
        let r: rules::Rule = t.parse().unwrap();
        Spec {
            ty: r.ty.letter() as u8,
            major: r.major,
            minor: r.minor,
            perms: r.perms as u8,
        }
    })
    .collect();
    let sd = load(&systemd_program(&rules, false), "GPL", "sd_devices");
    attach_raw(&machine, &sd, sys::BPF_F_ALLOW_MULTI);
    drop(sd);
    assert!(!api::check(emulator.to_str().unwrap(), &"b 7:0 r".parse().unwrap()).unwrap());
    try_open(&loop0);
    show(&["check", &v2, "b 7:0 rw"]);
    show(&["explain", &v2, "b 7:0 rw"]);
    show(&["explain", &v2, "c 136:3 rw"]);
    show(&["list", &v2]);
    show(&["explain", "--json", &v2, "b 7:0 rw"]);
}
