// SPDX-License-Identifier: LGPL-2.1-or-later
//! The 8-byte BPF instruction and constructors named after the kernel's
//! `include/linux/filter.h` macros (the seed's `VIR_BPF_*`).
#![forbid(unsafe_code)]

/// Instruction classes, sizes, modes, operations and sources (`linux/bpf_common.h`, `linux/bpf.h`).
#[allow(missing_docs)]
pub mod op {
    pub const BPF_LD: u8 = 0x00;
    pub const BPF_LDX: u8 = 0x01;
    pub const BPF_ST: u8 = 0x02;
    pub const BPF_STX: u8 = 0x03;
    pub const BPF_ALU: u8 = 0x04;
    pub const BPF_JMP: u8 = 0x05;
    pub const BPF_ALU64: u8 = 0x07;

    pub const BPF_W: u8 = 0x00;
    pub const BPF_H: u8 = 0x08;
    pub const BPF_B: u8 = 0x10;
    pub const BPF_DW: u8 = 0x18;

    pub const BPF_IMM: u8 = 0x00;
    pub const BPF_MEM: u8 = 0x60;

    pub const BPF_ADD: u8 = 0x00;
    pub const BPF_SUB: u8 = 0x10;
    pub const BPF_MUL: u8 = 0x20;
    pub const BPF_OR: u8 = 0x40;
    pub const BPF_AND: u8 = 0x50;
    pub const BPF_LSH: u8 = 0x60;
    pub const BPF_RSH: u8 = 0x70;
    pub const BPF_XOR: u8 = 0xa0;
    pub const BPF_MOV: u8 = 0xb0;

    pub const BPF_K: u8 = 0x00;
    pub const BPF_X: u8 = 0x08;

    pub const BPF_JA: u8 = 0x00;
    pub const BPF_JEQ: u8 = 0x10;
    pub const BPF_JSET: u8 = 0x40;
    pub const BPF_JNE: u8 = 0x50;
    pub const BPF_JLT: u8 = 0xa0;
    pub const BPF_CALL: u8 = 0x80;
    pub const BPF_EXIT: u8 = 0x90;

    /// `src_reg` of a `BPF_LD_MAP_FD`: the immediate is a map fd.
    pub const BPF_PSEUDO_MAP_FD: u8 = 1;
    /// `src_reg` of a `BPF_LD_MAP_VALUE` (Linux 5.2): the first immediate
    /// is a map fd, the second an offset into its (only) value; the
    /// register gets the address of that byte of the value.
    pub const BPF_PSEUDO_MAP_VALUE: u8 = 2;
    /// `bpf_map_lookup_elem`.
    pub const BPF_FUNC_MAP_LOOKUP_ELEM: i32 = 1;
}

use op::*;

/// Registers.
#[allow(missing_docs)]
pub mod reg {
    pub const R0: u8 = 0;
    pub const R1: u8 = 1;
    pub const R2: u8 = 2;
    pub const R3: u8 = 3;
    pub const R6: u8 = 6;
    pub const R7: u8 = 7;
    pub const R8: u8 = 8;
    pub const R9: u8 = 9;
    pub const R10: u8 = 10;
}

/// `struct bpf_insn`: opcode, the two 4-bit register fields, signed 16-bit
/// offset, signed 32-bit immediate.
///
/// The register fields are C bit-fields (`__u8 dst_reg:4; __u8 src_reg:4;`),
/// which C compilers lay out from the low bit on little-endian targets and
/// from the high bit on big-endian ones (s390x, ppc64): the byte is
/// `dst | src << 4` on the first, `dst << 4 | src` on the second. `regs`
/// holds the byte for the host the library runs on; [`regs_byte`] gives it
/// for either order.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    /// Opcode.
    pub code: u8,
    /// The register byte, in the host's bit-field order.
    pub regs: u8,
    /// Offset.
    pub off: i16,
    /// Immediate.
    pub imm: i32,
}

/// The byte order of the host: the kernel reads instructions in it.
pub const HOST_BIG_ENDIAN: bool = cfg!(target_endian = "big");

/// The register byte of `struct bpf_insn` for `dst` and `src` on a host of
/// the given byte order.
pub const fn regs_byte(dst: u8, src: u8, big_endian: bool) -> u8 {
    if big_endian {
        (dst & 0xf) << 4 | (src & 0xf)
    } else {
        (dst & 0xf) | (src & 0xf) << 4
    }
}

impl Insn {
    /// The generic constructor (`BPF_RAW_INSN`).
    pub const fn raw(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Self {
        Insn {
            code,
            regs: regs_byte(dst, src, HOST_BIG_ENDIAN),
            off,
            imm,
        }
    }

    /// Destination register.
    pub const fn dst(&self) -> u8 {
        if HOST_BIG_ENDIAN {
            self.regs >> 4
        } else {
            self.regs & 0xf
        }
    }

    /// Source register.
    pub const fn src(&self) -> u8 {
        if HOST_BIG_ENDIAN {
            self.regs & 0xf
        } else {
            self.regs >> 4
        }
    }

    /// The instruction as the kernel of this host reads it.
    pub const fn to_bytes(self) -> [u8; 8] {
        self.encode(HOST_BIG_ENDIAN)
    }

    /// The instruction as the kernel of a host of the given byte order
    /// reads it: `off` and `imm` in that order, and the register byte in
    /// that order's bit-field layout.
    pub const fn encode(self, big_endian: bool) -> [u8; 8] {
        let (off, imm) = if big_endian {
            (self.off.to_be_bytes(), self.imm.to_be_bytes())
        } else {
            (self.off.to_le_bytes(), self.imm.to_le_bytes())
        };
        let regs = regs_byte(self.dst(), self.src(), big_endian);
        [
            self.code, regs, off[0], off[1], imm[0], imm[1], imm[2], imm[3],
        ]
    }
}

/// `dst = src` (64-bit).
pub const fn mov64_reg(dst: u8, src: u8) -> Insn {
    Insn::raw(BPF_ALU64 | BPF_MOV | BPF_X, dst, src, 0, 0)
}

/// `dst = imm` (64-bit, sign-extended).
pub const fn mov64_imm(dst: u8, imm: i32) -> Insn {
    Insn::raw(BPF_ALU64 | BPF_MOV | BPF_K, dst, 0, 0, imm)
}

/// `dst op= src` (64-bit).
pub const fn alu64_reg(op: u8, dst: u8, src: u8) -> Insn {
    Insn::raw(BPF_ALU64 | op | BPF_X, dst, src, 0, 0)
}

/// `dst op= imm` (64-bit).
pub const fn alu64_imm(op: u8, dst: u8, imm: i32) -> Insn {
    Insn::raw(BPF_ALU64 | op | BPF_K, dst, 0, 0, imm)
}

/// `dst op= imm` (32-bit, upper half zeroed).
pub const fn alu32_imm(op: u8, dst: u8, imm: i32) -> Insn {
    Insn::raw(BPF_ALU | op | BPF_K, dst, 0, 0, imm)
}

/// `dst = *(size *)(src + off)`.
pub const fn ldx_mem(size: u8, dst: u8, src: u8, off: i16) -> Insn {
    Insn::raw(BPF_LDX | size | BPF_MEM, dst, src, off, 0)
}

/// `*(size *)(dst + off) = src`.
pub const fn stx_mem(size: u8, dst: u8, src: u8, off: i16) -> Insn {
    Insn::raw(BPF_STX | size | BPF_MEM, dst, src, off, 0)
}

/// `*(size *)(dst + off) = imm`.
pub const fn st_mem(size: u8, dst: u8, off: i16, imm: i32) -> Insn {
    Insn::raw(BPF_ST | size | BPF_MEM, dst, 0, off, imm)
}

/// `dst = imm64`: two slots.
pub const fn ld_imm64(dst: u8, imm: u64) -> [Insn; 2] {
    ld_imm64_raw(dst, 0, imm)
}

/// `dst = map fd` (resolved to the map by the kernel): two slots.
pub const fn ld_map_fd(dst: u8, fd: i32) -> [Insn; 2] {
    ld_imm64_raw(dst, BPF_PSEUDO_MAP_FD, fd as u32 as u64)
}

/// `dst = &value[off]` of the one-element array map `fd` (`BPF_LD_MAP_VALUE`,
/// Linux 5.2): the kernel puts the address of the value in the instruction,
/// so the program reads the map with plain loads, without a helper call.
pub const fn ld_map_value(dst: u8, fd: i32, off: u32) -> [Insn; 2] {
    ld_imm64_raw(
        dst,
        BPF_PSEUDO_MAP_VALUE,
        (off as u64) << 32 | fd as u32 as u64,
    )
}

const fn ld_imm64_raw(dst: u8, src: u8, imm: u64) -> [Insn; 2] {
    [
        Insn::raw(BPF_LD | BPF_DW | BPF_IMM, dst, src, 0, imm as u32 as i32),
        Insn::raw(0, 0, 0, 0, (imm >> 32) as u32 as i32),
    ]
}

/// `if dst op imm goto pc + off`.
pub const fn jmp_imm(op: u8, dst: u8, imm: i32, off: i16) -> Insn {
    Insn::raw(BPF_JMP | op | BPF_K, dst, 0, off, imm)
}

/// `if dst op src goto pc + off`.
pub const fn jmp_reg(op: u8, dst: u8, src: u8, off: i16) -> Insn {
    Insn::raw(BPF_JMP | op | BPF_X, dst, src, off, 0)
}

/// `goto pc + off`.
pub const fn ja(off: i16) -> Insn {
    Insn::raw(BPF_JMP | BPF_JA, 0, 0, off, 0)
}

/// `call helper`.
pub const fn call(helper: i32) -> Insn {
    Insn::raw(BPF_JMP | BPF_CALL, 0, 0, 0, helper)
}

/// `exit`.
pub const fn exit() -> Insn {
    Insn::raw(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)
}

#[cfg(test)]
mod tests {
    use super::reg::*;
    use super::*;

    /// The register byte follows the C bit-field order of each byte order:
    /// `BPF_MOV64_REG(BPF_REG_6, BPF_REG_1)` is `bf 16` on x86_64 and
    /// `bf 61` on s390x (as clang emits it for `-target bpfeb`).
    #[test]
    fn register_byte_for_both_byte_orders() {
        assert_eq!(regs_byte(6, 1, false), 0x16);
        assert_eq!(regs_byte(6, 1, true), 0x61);
        let i = ldx_mem(BPF_W, R1, R6, 8);
        assert_eq!((i.dst(), i.src()), (R1, R6));
        assert_eq!(i.encode(false), [0x61, 0x61, 8, 0, 0, 0, 0, 0]);
        assert_eq!(i.encode(true), [0x61, 0x16, 0, 8, 0, 0, 0, 0]);
        let j = alu64_imm(BPF_ADD, R2, -8);
        assert_eq!(j.encode(false), [0x07, 0x02, 0, 0, 0xf8, 0xff, 0xff, 0xff]);
        assert_eq!(j.encode(true), [0x07, 0x20, 0, 0, 0xff, 0xff, 0xff, 0xf8]);
        assert_eq!(
            jmp_reg(BPF_JEQ, R1, R2, 50).encode(true),
            [0x1d, 0x12, 0, 50, 0, 0, 0, 0]
        );
        assert_eq!(i.to_bytes(), i.encode(HOST_BIG_ENDIAN));
    }

    /// Literal little-endian encodings, as `llvm-objdump` prints them for
    /// `-target bpfel`; [`Insn::encode`] gives them on any host.
    #[test]
    fn encodings_match_the_kernel() {
        assert_eq!(
            mov64_reg(R6, R1).encode(false),
            [0xbf, 0x16, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            ldx_mem(BPF_W, R1, R6, 8).encode(false),
            [0x61, 0x61, 8, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            alu64_imm(BPF_LSH, R2, 32).encode(false),
            [0x67, 0x02, 0, 0, 32, 0, 0, 0]
        );
        assert_eq!(
            alu64_reg(BPF_OR, R2, R1).encode(false),
            [0x4f, 0x12, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            stx_mem(BPF_DW, R10, R2, -8).encode(false),
            [0x7b, 0x2a, 0xf8, 0xff, 0, 0, 0, 0]
        );
        assert_eq!(
            alu64_imm(BPF_ADD, R2, -8).encode(false),
            [0x07, 0x02, 0, 0, 0xf8, 0xff, 0xff, 0xff]
        );
        assert_eq!(
            ld_map_fd(R1, 5).map(|i| i.encode(false)),
            [[0x18, 0x11, 0, 0, 5, 0, 0, 0], [0; 8]]
        );
        assert_eq!(
            ld_imm64(R2, 0xffff_ffff_0000_0000).map(|i| i.encode(false)),
            [
                [0x18, 0x02, 0, 0, 0, 0, 0, 0],
                [0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]
            ]
        );
        assert_eq!(call(1).encode(false), [0x85, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(
            jmp_imm(BPF_JEQ, R1, 0, 5).encode(false),
            [0x15, 0x01, 5, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            jmp_reg(BPF_JEQ, R1, R2, 50).encode(false),
            [0x1d, 0x21, 50, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            mov64_imm(R1, -1).encode(false),
            [0xb7, 0x01, 0, 0, 0xff, 0xff, 0xff, 0xff]
        );
        assert_eq!(
            alu32_imm(BPF_AND, R3, 2).encode(false),
            [0x54, 0x03, 0, 0, 2, 0, 0, 0]
        );
        assert_eq!(exit().encode(false), [0x95, 0, 0, 0, 0, 0, 0, 0]);
    }
}
