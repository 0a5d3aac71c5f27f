// SPDX-License-Identifier: LGPL-2.1-or-later
//! The disassembly, in the kernel's verifier-log syntax, that the golden
//! listings of the programs are checked against.
#![forbid(unsafe_code)]

use crate::insn::op::*;
use crate::insn::*;

fn reg(r: u8) -> String {
    format!("r{r}")
}

fn size(code: u8) -> &'static str {
    match code & 0x18 {
        BPF_W => "u32",
        BPF_H => "u16",
        BPF_B => "u8",
        _ => "u64",
    }
}

fn alu_op(op: u8) -> &'static str {
    match op {
        BPF_ADD => "+=",
        BPF_SUB => "-=",
        BPF_MUL => "*=",
        BPF_OR => "|=",
        BPF_AND => "&=",
        BPF_LSH => "<<=",
        BPF_RSH => ">>=",
        BPF_XOR => "^=",
        BPF_MOV => "=",
        _ => "?=",
    }
}

fn jmp_op(op: u8) -> &'static str {
    match op {
        BPF_JEQ => "==",
        BPF_JNE => "!=",
        BPF_JSET => "&",
        BPF_JLT => "<",
        _ => "?",
    }
}

/// An ALU instruction (`w` registers for 32-bit ones).
fn alu(i: Insn) -> String {
    let w = if i.code & 0x07 == BPF_ALU { "w" } else { "r" };
    let (d, s) = (format!("{w}{}", i.dst()), format!("{w}{}", i.src()));
    let rhs = if i.code & BPF_X != 0 {
        s
    } else {
        i.imm.to_string()
    };
    format!("{d} {} {rhs}", alu_op(i.code & 0xf0))
}

/// A jump, call or exit at index `pc`.
fn jmp(i: Insn, pc: usize) -> String {
    let target = pc as i64 + 1 + i.off as i64;
    match i.code & 0xf0 {
        BPF_CALL => format!("call {}", i.imm),
        BPF_EXIT => "exit".to_string(),
        BPF_JA => format!("goto <{target}>"),
        op => {
            let rhs = if i.code & BPF_X != 0 {
                reg(i.src())
            } else {
                format!("{:#x}", i.imm)
            };
            format!("if {} {} {rhs} goto <{target}>", reg(i.dst()), jmp_op(op))
        }
    }
}

/// The program as the kernel's verifier log prints it, one line per
/// instruction with its index (`12: r3 = *(u8 *)(r1 +128)`); jumps show
/// their target as `<N>`. A `ld_imm64` takes two indices.
pub fn disassemble(prog: &[Insn]) -> String {
    let mut out = String::new();
    let mut pc = 0;
    while pc < prog.len() {
        let i = prog[pc];
        let (d, s, off, imm) = (reg(i.dst()), reg(i.src()), i.off, i.imm);
        let class = i.code & 0x07;
        let text = match class {
            BPF_LDX => format!("{d} = *({} *)({s} {off:+})", size(i.code)),
            BPF_STX => format!("*({} *)({d} {off:+}) = {s}", size(i.code)),
            BPF_ST => format!("*({} *)({d} {off:+}) = {imm}", size(i.code)),
            BPF_ALU64 | BPF_ALU => alu(i),
            BPF_LD if i.code == BPF_LD | BPF_DW | BPF_IMM => {
                let hi = prog.get(pc + 1).map_or(0, |n| n.imm);
                pc += 1;
                match i.src() {
                    BPF_PSEUDO_MAP_FD => format!("{d} = map[fd {imm}] ll"),
                    BPF_PSEUDO_MAP_VALUE => format!("{d} = map[fd {imm}][0]+{hi} ll"),
                    _ => format!(
                        "{d} = {:#x} ll",
                        (hi as u32 as u64) << 32 | imm as u32 as u64
                    ),
                }
            }
            BPF_JMP => jmp(i, pc),
            _ => format!("(unknown {:#04x})", i.code),
        };
        let index = if i.code == BPF_LD | BPF_DW | BPF_IMM {
            pc - 1
        } else {
            pc
        };
        out.push_str(&format!("{index:3}: {text}\n"));
        pc += 1;
    }
    out
}
