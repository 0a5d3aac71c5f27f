// SPDX-License-Identifier: LGPL-2.1-or-later
//! An interpreter of a device program as the kernel reports it: its
//! translated instructions (`xlated_prog_insns` of `BPF_OBJ_GET_INFO_BY_FD`,
//! the instructions after the verifier's rewrites, map references shown as
//! map ids), run on `struct bpf_cgroup_dev_ctx { u32 access_type; u32
//! major; u32 minor; }`.
//!
//! It runs what device programs that are not this library's or libvirt's
//! are made of (systemd's, runc's, crun's: loads from the context,
//! comparisons, jumps, 32- and 64-bit arithmetic, the stack) and nothing
//! else. Anything whose result it cannot know exactly fails with a
//! description of what and where, never a guess: a helper call or any
//! other call, a load or store outside the context and the stack (a map's
//! memory), arithmetic or a comparison on a pointer, an unknown opcode, a
//! jump out of the program, more than [`MAX_STEPS`] instructions run
//! (bounded loops exist since Linux 5.3), a return value the verifier
//! would not let through.
#![forbid(unsafe_code)]

use crate::insn::Insn;

/// The most instructions one run may take: the verifier's own limit of
/// instructions it walks (`BPF_COMPLEXITY_LIMIT_INSNS`), which bounds any
/// program it accepted.
pub const MAX_STEPS: u64 = 1_000_000;

/// Bytes of stack the interpreter gives a program: the verifier's 512,
/// and room for the slots it adds itself (`may_goto`'s counter).
const STACK: usize = 1024;

/// What a register holds: a number, or a pointer (an offset into one of
/// the regions a device program can address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Region {
    Scalar,
    Ctx,
    /// Offsets relative to the frame pointer (r10), negative.
    Stack,
    /// `ld_imm64` of a map (the map's id): the program holds the map
    /// itself, to pass to a helper.
    Map(u32),
    /// `ld_imm64` of a map's value (the map's id).
    MapValue(u32),
}

#[derive(Debug, Clone, Copy)]
struct Val {
    region: Region,
    v: u64,
}

impl Val {
    const fn scalar(v: u64) -> Val {
        Val {
            region: Region::Scalar,
            v,
        }
    }
}

/// Runs `prog` for one access; returns r0 (0 denies, 1 allows), or what
/// could not be evaluated.
pub fn run(prog: &[Insn], access_type: u32, major: u32, minor: u32) -> Result<u64, String> {
    let mut ctx = [0u8; 12];
    for (i, w) in [access_type, major, minor].into_iter().enumerate() {
        ctx[4 * i..4 * i + 4].copy_from_slice(&w.to_ne_bytes());
    }
    let mut m = Machine {
        r: [Val::scalar(0); 12],
        ctx,
        stack: [0; STACK],
        spilled: [None; STACK / 8],
    };
    m.r[1] = Val {
        region: Region::Ctx,
        v: 0,
    };
    m.r[10] = Val {
        region: Region::Stack,
        v: 0,
    };
    let mut pc = 0usize;
    for _ in 0..MAX_STEPS {
        let Some(&i) = prog.get(pc) else {
            return Err(format!("a jump to instruction {pc}, outside the program"));
        };
        let at = pc;
        pc += 1;
        let fail = |what: String| Err(format!("{what} (instruction {at}, {})", hex(&i)));
        let (d, s) = (i.dst() as usize, i.src() as usize);
        if d >= 12 || s >= 12 {
            return fail("a register beyond r10 and the verifier's AX".into());
        }
        match i.code & 0x07 {
            // BPF_ALU, BPF_ALU64
            c @ (0x04 | 0x07) => {
                if let Err(e) = m.alu(&i, c == 0x07) {
                    return fail(e);
                }
            }
            // BPF_JMP, BPF_JMP32
            c @ (0x05 | 0x06) => {
                let wide = c == 0x05;
                let op = i.code & 0xf0;
                let target = |off: i64| -> Result<usize, String> {
                    let t = pc as i64 + off;
                    if t < 0 || t as usize >= prog.len() {
                        Err(format!("a jump to {t}, outside the program"))
                    } else {
                        Ok(t as usize)
                    }
                };
                match op {
                    0x00 => {
                        let off = if wide { i.off as i64 } else { i.imm as i64 };
                        pc = match target(off) {
                            Ok(t) => t,
                            Err(e) => return fail(e),
                        };
                    }
                    0x80 => {
                        return fail(match i.src() {
                            1 => "a call of a BPF function".to_string(),
                            2 => "a call of a kernel function".to_string(),
                            _ => format!(
                                "a helper call (the kernel's reference {}): its result is \
                                 not known here",
                                i.imm
                            ),
                        })
                    }
                    0x90 if wide => {
                        let r0 = m.r[0];
                        if r0.region != Region::Scalar {
                            return fail("a pointer returned".into());
                        }
                        return Ok(r0.v);
                    }
                    _ => {
                        let a = m.r[d];
                        let b = if i.code & 0x08 != 0 {
                            m.r[s]
                        } else {
                            Val::scalar(i.imm as i64 as u64)
                        };
                        if a.region != Region::Scalar || b.region != Region::Scalar {
                            return fail("a comparison with a pointer".into());
                        }
                        let taken = match compare(op, a.v, b.v, wide) {
                            Some(t) => t,
                            None => return fail(format!("jump operation {op:#04x}")),
                        };
                        if taken {
                            pc = match target(i.off as i64) {
                                Ok(t) => t,
                                Err(e) => return fail(e),
                            };
                        }
                    }
                }
            }
            // BPF_LDX
            0x01 => {
                let mode = i.code & 0xe0;
                if mode != 0x60 && mode != 0x80 {
                    return fail(format!("load mode {mode:#04x}"));
                }
                let size = size_of(i.code);
                let v = match m.load(m.r[s], i.off, size) {
                    Ok(v) => v,
                    Err(e) => return fail(e),
                };
                m.r[d] = if mode == 0x80 && size < 8 {
                    // BPF_MEMSX: sign-extending load.
                    let shift = 64 - 8 * size as u32;
                    Val::scalar((((v.v << shift) as i64) >> shift) as u64)
                } else {
                    v
                };
            }
            // BPF_ST, BPF_STX
            c @ (0x02 | 0x03) => {
                let mode = i.code & 0xe0;
                if c == 0x02 && mode == 0xc0 {
                    // BPF_ST | BPF_NOSPEC: a speculation barrier.
                    continue;
                }
                if mode != 0x60 {
                    return fail(format!("store mode {mode:#04x} (an atomic operation)"));
                }
                let value = if c == 0x02 {
                    Val::scalar(i.imm as i64 as u64)
                } else {
                    m.r[s]
                };
                if let Err(e) = m.store(m.r[d], i.off, size_of(i.code), value) {
                    return fail(e);
                }
            }
            // BPF_LD: only BPF_LD | BPF_IMM | BPF_DW, two slots.
            _ if i.code == 0x18 => {
                let Some(next) = prog.get(pc) else {
                    return fail("a 64-bit load cut short by the end of the program".into());
                };
                pc += 1;
                let hi = next.imm as u32 as u64;
                m.r[d] = match i.src() {
                    0 => Val::scalar((hi << 32) | i.imm as u32 as u64),
                    1 => Val {
                        region: Region::Map(i.imm as u32),
                        v: 0,
                    },
                    2 => Val {
                        region: Region::MapValue(i.imm as u32),
                        v: hi,
                    },
                    k => return fail(format!("a 64-bit load of kind {k}")),
                };
            }
            _ => return fail(format!("opcode {:#04x}", i.code)),
        }
    }
    Err(format!(
        "more than {MAX_STEPS} instructions run without an exit"
    ))
}

struct Machine {
    /// r0-r10 and the verifier's scratch register AX (11).
    r: [Val; 12],
    ctx: [u8; 12],
    stack: [u8; STACK],
    /// Pointers spilled to an 8-byte stack slot, as the slot holds them.
    spilled: [Option<Val>; STACK / 8],
}

fn size_of(code: u8) -> usize {
    match code & 0x18 {
        0x00 => 4,
        0x08 => 2,
        0x10 => 1,
        _ => 8,
    }
}

fn hex(i: &Insn) -> String {
    i.to_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

fn describe(region: Region) -> String {
    match region {
        Region::Scalar => "a number, not a pointer".into(),
        Region::Ctx => "the context".into(),
        Region::Stack => "the stack".into(),
        Region::Map(id) => format!("map {id} itself"),
        Region::MapValue(id) => format!("the value of map {id}"),
    }
}

fn from_ne(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    if cfg!(target_endian = "big") {
        b[8 - bytes.len()..].copy_from_slice(bytes);
        u64::from_be_bytes(b)
    } else {
        b[..bytes.len()].copy_from_slice(bytes);
        u64::from_le_bytes(b)
    }
}

fn to_ne(v: u64, size: usize) -> Vec<u8> {
    if cfg!(target_endian = "big") {
        v.to_be_bytes()[8 - size..].to_vec()
    } else {
        v.to_le_bytes()[..size].to_vec()
    }
}

impl Machine {
    /// The offset into the stack array of an access of `size` at `addr`
    /// (a stack pointer) plus `off`.
    fn stack_at(addr: Val, off: i16, size: usize) -> Result<usize, String> {
        let rel = (addr.v as i64).wrapping_add(off as i64);
        if rel < -(STACK as i64) || rel + size as i64 > 0 {
            return Err(format!(
                "an access of {size} bytes at r10{rel:+}, outside the stack"
            ));
        }
        Ok((STACK as i64 + rel) as usize)
    }

    fn load(&self, addr: Val, off: i16, size: usize) -> Result<Val, String> {
        match addr.region {
            Region::Ctx => {
                let o = (addr.v as i64).wrapping_add(off as i64);
                if o < 0 || o as usize + size > self.ctx.len() {
                    return Err(format!(
                        "a load of {size} bytes at offset {o} of the context"
                    ));
                }
                let o = o as usize;
                Ok(Val::scalar(from_ne(&self.ctx[o..o + size])))
            }
            Region::Stack => {
                let o = Self::stack_at(addr, off, size)?;
                if size == 8 && o % 8 == 0 {
                    if let Some(p) = self.spilled[o / 8] {
                        return Ok(p);
                    }
                }
                Ok(Val::scalar(from_ne(&self.stack[o..o + size])))
            }
            r => Err(format!("a load from {}", describe(r))),
        }
    }

    fn store(&mut self, addr: Val, off: i16, size: usize, value: Val) -> Result<(), String> {
        if addr.region != Region::Stack {
            return Err(format!("a store to {}", describe(addr.region)));
        }
        let o = Self::stack_at(addr, off, size)?;
        for slot in o / 8..=(o + size - 1) / 8 {
            self.spilled[slot] = None;
        }
        if value.region != Region::Scalar {
            if size != 8 || o % 8 != 0 {
                return Err("a pointer stored in part".into());
            }
            self.spilled[o / 8] = Some(value);
        }
        self.stack[o..o + size].copy_from_slice(&to_ne(value.v, size));
        Ok(())
    }

    fn alu(&mut self, i: &Insn, wide: bool) -> Result<(), String> {
        let op = i.code & 0xf0;
        let (d, s) = (i.dst() as usize, i.src() as usize);
        let by_reg = i.code & 0x08 != 0;
        let src = if by_reg {
            self.r[s]
        } else {
            Val::scalar(i.imm as i64 as u64)
        };
        let dst = self.r[d];
        // BPF_END: byte swaps (the source bit is the direction).
        if op == 0xd0 {
            if dst.region != Region::Scalar {
                return Err("a byte swap of a pointer".into());
            }
            let to_be = i.code & 0x08 != 0;
            let swap = wide || (to_be != cfg!(target_endian = "big"));
            let v = dst.v;
            let out = match (i.imm, swap) {
                (16, true) => (v as u16).swap_bytes() as u64,
                (32, true) => (v as u32).swap_bytes() as u64,
                (64, true) => v.swap_bytes(),
                (16, false) => v as u16 as u64,
                (32, false) => v as u32 as u64,
                (64, false) => v,
                (n, _) => return Err(format!("a byte swap of {n} bits")),
            };
            self.r[d] = Val::scalar(out);
            return Ok(());
        }
        if op == 0xb0 {
            // MOV, and MOVSX (off 8, 16, 32: sign-extending from that width).
            let v = match (i.off, by_reg) {
                (0, _) => {
                    if !wide && src.region != Region::Scalar {
                        return Err("a 32-bit copy of a pointer".into());
                    }
                    if wide {
                        self.r[d] = src;
                        return Ok(());
                    }
                    src.v
                }
                (n @ (8 | 16 | 32), true) if n != 32 || wide => {
                    if src.region != Region::Scalar {
                        return Err("a sign extension of a pointer".into());
                    }
                    let shift = 64 - n as u32;
                    (((src.v << shift) as i64) >> shift) as u64
                }
                (n, _) => return Err(format!("a move with offset {n}")),
            };
            self.r[d] = Val::scalar(if wide { v } else { v as u32 as u64 });
            return Ok(());
        }
        // Pointer arithmetic: only a number added to or taken from a
        // pointer, in 64 bits (what the verifier lets through).
        if dst.region != Region::Scalar || src.region != Region::Scalar {
            let ok = wide
                && src.region == Region::Scalar
                && (op == 0x00 || op == 0x10)
                && dst.region != Region::Scalar
                && !matches!(dst.region, Region::Map(_));
            if !ok {
                return Err("arithmetic on a pointer".into());
            }
            let v = if op == 0x00 {
                dst.v.wrapping_add(src.v)
            } else {
                dst.v.wrapping_sub(src.v)
            };
            self.r[d] = Val {
                region: dst.region,
                v,
            };
            return Ok(());
        }
        let signed = i.off == 1;
        if i.off != 0 && !(signed && (op == 0x30 || op == 0x90)) {
            return Err(format!("operation {op:#04x} with offset {}", i.off));
        }
        let out = if wide {
            alu64(op, dst.v, src.v, signed)?
        } else {
            alu32(op, dst.v as u32, src.v as u32, signed)? as u64
        };
        self.r[d] = Val::scalar(out);
        Ok(())
    }
}

fn alu64(op: u8, a: u64, b: u64, signed: bool) -> Result<u64, String> {
    Ok(match op {
        0x00 => a.wrapping_add(b),
        0x10 => a.wrapping_sub(b),
        0x20 => a.wrapping_mul(b),
        0x30 if b == 0 => 0,
        0x30 if signed => (a as i64).wrapping_div(b as i64) as u64,
        0x30 => a / b,
        0x40 => a | b,
        0x50 => a & b,
        0x60 => a << (b & 63),
        0x70 => a >> (b & 63),
        0x80 => a.wrapping_neg(),
        0x90 if b == 0 => a,
        0x90 if signed => (a as i64).wrapping_rem(b as i64) as u64,
        0x90 => a % b,
        0xa0 => a ^ b,
        0xc0 => ((a as i64) >> (b & 63)) as u64,
        _ => return Err(format!("arithmetic operation {op:#04x}")),
    })
}

fn alu32(op: u8, a: u32, b: u32, signed: bool) -> Result<u32, String> {
    Ok(match op {
        0x00 => a.wrapping_add(b),
        0x10 => a.wrapping_sub(b),
        0x20 => a.wrapping_mul(b),
        0x30 if b == 0 => 0,
        0x30 if signed => (a as i32).wrapping_div(b as i32) as u32,
        0x30 => a / b,
        0x40 => a | b,
        0x50 => a & b,
        0x60 => a << (b & 31),
        0x70 => a >> (b & 31),
        0x80 => a.wrapping_neg(),
        0x90 if b == 0 => a,
        0x90 if signed => (a as i32).wrapping_rem(b as i32) as u32,
        0x90 => a % b,
        0xa0 => a ^ b,
        0xc0 => ((a as i32) >> (b & 31)) as u32,
        _ => return Err(format!("arithmetic operation {op:#04x}")),
    })
}

/// A conditional jump's test; None for an operation that is not one.
fn compare(op: u8, a: u64, b: u64, wide: bool) -> Option<bool> {
    let (a, b) = if wide {
        (a, b)
    } else {
        (a as u32 as u64, b as u32 as u64)
    };
    let (sa, sb) = if wide {
        (a as i64, b as i64)
    } else {
        (a as u32 as i32 as i64, b as u32 as i32 as i64)
    };
    Some(match op {
        0x10 => a == b,
        0x20 => a > b,
        0x30 => a >= b,
        0x40 => a & b != 0,
        0x50 => a != b,
        0x60 => sa > sb,
        0x70 => sa >= sb,
        0xa0 => a < b,
        0xb0 => a <= b,
        0xc0 => sa < sb,
        0xd0 => sa <= sb,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::insn::op::*;
    use crate::insn::reg::*;
    use crate::insn::*;

    const CHAR: u32 = 2;
    const READ: u32 = 2;

    /// runc's and crun's prologue: type, access, major, minor in r2-r5.
    fn prologue() -> Vec<Insn> {
        vec![
            ldx_mem(BPF_W, R2, R1, 0),
            alu32_imm(BPF_AND, R2, 0xffff),
            ldx_mem(BPF_W, R3, R1, 0),
            alu32_imm(BPF_RSH, R3, 16),
            ldx_mem(BPF_W, 4, R1, 4),
            ldx_mem(BPF_W, 5, R1, 8),
        ]
    }

    #[test]
    fn a_rule_block_decides() {
        // allow c 1:3 r, else deny
        let mut p = prologue();
        p.extend([
            jmp_imm(BPF_JNE, R2, CHAR as i32, 7),
            Insn::raw(BPF_ALU | BPF_MOV | BPF_X, R1, R3, 0, 0),
            alu32_imm(BPF_AND, R1, READ as i32),
            jmp_reg(BPF_JNE, R1, R3, 4),
            jmp_imm(BPF_JNE, 4, 1, 3),
            jmp_imm(BPF_JNE, 5, 3, 2),
            Insn::raw(BPF_ALU | BPF_MOV | BPF_K, R0, 0, 0, 1),
            exit(),
            mov64_imm(R0, 0),
            exit(),
        ]);
        let ask = |acc: u32, ty: u32, ma: u32, mi: u32| run(&p, acc << 16 | ty, ma, mi).unwrap();
        assert_eq!(ask(READ, CHAR, 1, 3), 1);
        assert_eq!(ask(READ | 4, CHAR, 1, 3), 0);
        assert_eq!(ask(READ, 1, 1, 3), 0);
        assert_eq!(ask(READ, CHAR, 1, 4), 0);
        assert_eq!(ask(0, CHAR, 1, 3), 1);
    }

    #[test]
    fn what_cannot_be_evaluated_is_named() {
        let call_prog = [call(BPF_FUNC_MAP_LOOKUP_ELEM), exit()];
        assert!(run(&call_prog, 0, 0, 0)
            .unwrap_err()
            .contains("a helper call"));
        let map = ld_map_fd(R1, 7);
        let load_map = [map[0], map[1], ldx_mem(BPF_W, R0, R1, 0), exit()];
        assert!(run(&load_map, 0, 0, 0).unwrap_err().contains("map 7"));
        let outside = [ldx_mem(BPF_W, R0, R1, 12), exit()];
        assert!(run(&outside, 0, 0, 0).unwrap_err().contains("context"));
        let lp = [mov64_imm(R0, 1), ja(-2)];
        assert!(run(&lp, 0, 0, 0).unwrap_err().contains("without an exit"));
        let off_end = [ja(5), exit()];
        assert!(run(&off_end, 0, 0, 0)
            .unwrap_err()
            .contains("outside the program"));
        let unknown = [Insn::raw(0x20, 0, 0, 0, 0), exit()];
        assert!(run(&unknown, 0, 0, 0).unwrap_err().contains("opcode 0x20"));
    }

    #[test]
    fn stack_and_arithmetic() {
        let p = [
            ldx_mem(BPF_W, R2, R1, 4),
            stx_mem(BPF_DW, R10, R2, -8),
            st_mem(BPF_W, R10, -16, -1),
            ldx_mem(BPF_DW, R3, R10, -8),
            ldx_mem(BPF_W, R6, R10, -16),
            alu64_reg(BPF_ADD, R3, R6),
            // (major + 0xffffffff) >> 32 is 1 exactly when major > 0
            alu64_imm(BPF_RSH, R3, 32),
            mov64_reg(R0, R3),
            exit(),
        ];
        assert_eq!(run(&p, 0, 5, 0).unwrap(), 1);
        assert_eq!(run(&p, 0, 0, 0).unwrap(), 0);
        // A 1-byte load of the access half of access_type.
        let narrow = [ldx_mem(BPF_B, R0, R1, 2), exit()];
        if cfg!(target_endian = "little") {
            assert_eq!(run(&narrow, 6 << 16 | 2, 0, 0).unwrap(), 6);
        }
        // Signed and 32-bit comparisons.
        let p = [
            ldx_mem(BPF_W, R2, R1, 8),
            mov64_imm(R0, 1),
            Insn::raw(BPF_JMP | 0xc0, R2, 0, 1, 0), // if (s64)r2 < 0 skip
            exit(),
            mov64_imm(R0, 0),
            exit(),
        ];
        assert_eq!(run(&p, 0, 0, u32::MAX).unwrap(), 1); // zero-extended
        let p32 = [
            ldx_mem(BPF_W, R2, R1, 8),
            mov64_imm(R0, 0),
            Insn::raw(0x06 | 0xc0, R2, 0, 1, 0), // if (s32)r2 < 0 skip
            exit(),
            mov64_imm(R0, 1),
            exit(),
        ];
        assert_eq!(run(&p32, 0, 0, u32::MAX).unwrap(), 1);
        assert_eq!(run(&p32, 0, 0, 5).unwrap(), 0);
    }
}
