// SPDX-License-Identifier: LGPL-2.1-or-later
//! The programs compared: ours (through the library's public API), the
//! seed (libvirt's program on its map), runc-style, and the floor.

use crate::cases::*;
use crate::cgroups::*;
use crate::libvirt_c;
use crate::ours;
use crate::Res;
use std::os::fd::{AsRawFd, OwnedFd};
use vircgroup_v2_devices::insn::op::*;
use vircgroup_v2_devices::insn::reg::*;
use vircgroup_v2_devices::insn::{alu32_imm, exit, jmp_imm, jmp_reg, ldx_mem, mov64_imm, Insn};
use vircgroup_v2_devices::rules::{self, RWM};
use vircgroup_v2_devices::sys::{self, BPF_PROG_TYPE_CGROUP_DEVICE};

const R4: u8 = 4;
const R5: u8 = 5;

/// `r0 = 1; exit`.
fn floor_program() -> Vec<Insn> {
    vec![mov64_imm(R0, 1), exit()]
}

/// A program as runc's `devicefilter` compiles a rule list: the context
/// into registers, then one block per rule that jumps to the next block on
/// the first field that does not match and allows at its end; nothing
/// matched denies.
///
/// ```text
///     r2 = *(u32 *)(r1 + 0); w2 &= 0xffff       type
///     r3 = *(u32 *)(r1 + 0); w3 >>= 16          access
///     r4 = *(u32 *)(r1 + 4)                     major
///     r5 = *(u32 *)(r1 + 8)                     minor
/// per rule:
///     if r2 != TYPE goto next                   unless 'a'
///     w1 = w3; w1 &= ACCESS; if r1 != r3 goto next   unless rwm
///     if r4 != MAJOR goto next                  unless *
///     if r5 != MINOR goto next                  unless *
///     w0 = 1; exit
/// next: ...
///     w0 = 0; exit
/// ```
fn runc_program(rules: &[Spec]) -> Vec<Insn> {
    let mut p = vec![
        ldx_mem(BPF_W, R2, R1, 0),
        alu32_imm(BPF_AND, R2, 0xffff),
        ldx_mem(BPF_W, R3, R1, 0),
        alu32_imm(BPF_RSH, R3, 16),
        ldx_mem(BPF_W, R4, R1, 4),
        ldx_mem(BPF_W, R5, R1, 8),
    ];
    for r in rules {
        let start = p.len();
        match r.ty {
            b'b' => p.push(jmp_imm(BPF_JNE, R2, rules::DEV_BLOCK as i32, 0)),
            b'c' => p.push(jmp_imm(BPF_JNE, R2, rules::DEV_CHAR as i32, 0)),
            _ => {}
        }
        if r.perms != RWM {
            p.extend([
                Insn::raw(BPF_ALU | BPF_MOV | BPF_X, R1, R3, 0, 0),
                alu32_imm(BPF_AND, R1, rules::acc_bits(r.perms) as i32),
                jmp_reg(BPF_JNE, R1, R3, 0),
            ]);
        }
        if r.major >= 0 {
            p.push(jmp_imm(BPF_JNE, R4, r.major, 0));
        }
        if r.minor >= 0 {
            p.push(jmp_imm(BPF_JNE, R5, r.minor, 0));
        }
        p.extend([alu32_imm(BPF_MOV, R0, 1), exit()]);
        // Every jump of the block goes to the next block.
        let next = p.len();
        for (i, insn) in p.iter_mut().enumerate().skip(start) {
            if insn.code & 0x07 == BPF_JMP && insn.code & 0xf0 == BPF_JNE {
                insn.off = (next - i - 1) as i16;
            }
        }
    }
    p.extend([alu32_imm(BPF_MOV, R0, 0), exit()]);
    p
}

pub(crate) fn load(insns: &[Insn], name: &str) -> Res<OwnedFd> {
    Ok(sys::prog_load(
        BPF_PROG_TYPE_CGROUP_DEVICE,
        insns,
        "GPL",
        name,
    )?)
}

/// The capacity libvirt's map has after `n` allows: 64, doubled when full.
fn libvirt_max(n: usize) -> u32 {
    let mut max = 64;
    while (max as usize) < n {
        max *= 2;
    }
    max
}

/// What is measured: a program attached to its own cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Seed,
    Ours,
    Runc,
    Floor,
}

/// Attaches the `kind` program for `rules` to `cg` (ours through the
/// library's C ABI: deny all, then one allow per rule) and returns an fd on
/// what is attached there. A program without a map (runc-style, the floor)
/// is the same at every set-up: `fixed` keeps the one loaded the first
/// time (loading runc-style at 200 rules takes the verifier ~0.4 s).
pub(crate) fn set_up(
    kind: Kind,
    cg: &mut Cg,
    rules: &[Spec],
    fixed: &mut Option<OwnedFd>,
) -> Res<OwnedFd> {
    match kind {
        Kind::Ours => {
            let path = cg.library()?;
            ours::deny_all(&path)?;
            for r in rules {
                ours::allow(&path, r)?;
            }
            let (count, _) = ours::state(&path)?;
            if count != rules.len() as isize {
                return Err(format!(
                    "{}: the library counts {count} rules, not {}",
                    cg.p(),
                    rules.len()
                )
                .into());
            }
        }
        Kind::Seed => {
            // libvirt's calls (`libvirt_c`), the map made at its final size.
            let map =
                libvirt_c::create_map(sys::BPF_MAP_TYPE_HASH, 8, 4, libvirt_max(rules.len()))?;
            for r in rules {
                let (key, value) = r.libvirt();
                libvirt_c::update(map.as_raw_fd(), key, value)?;
            }
            cg.attach(libvirt_c::load_libvirt_program(map.as_raw_fd())?)?;
        }
        Kind::Runc | Kind::Floor => {
            let prog = match fixed {
                Some(prog) => prog,
                None => fixed.insert(if kind == Kind::Runc {
                    load(&runc_program(rules), "runc_style")?
                } else {
                    load(&floor_program(), "floor")?
                }),
            };
            cg.attach(prog.try_clone()?)?
        }
    }
    cg.program()
}
