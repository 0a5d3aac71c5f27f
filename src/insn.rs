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
    pub const BPF_OR: u8 = 0x40;
    pub const BPF_AND: u8 = 0x50;
    pub const BPF_LSH: u8 = 0x60;
    pub const BPF_RSH: u8 = 0x70;
    pub const BPF_MOV: u8 = 0xb0;

    pub const BPF_K: u8 = 0x00;
    pub const BPF_X: u8 = 0x08;

    pub const BPF_JA: u8 = 0x00;
    pub const BPF_JEQ: u8 = 0x10;
    pub const BPF_JNE: u8 = 0x50;
    pub const BPF_CALL: u8 = 0x80;
    pub const BPF_EXIT: u8 = 0x90;

    /// `src_reg` of a `BPF_LD_MAP_FD`: the immediate is a map fd.
    pub const BPF_PSEUDO_MAP_FD: u8 = 1;
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

/// `struct bpf_insn`: opcode, dst (low nibble) and src (high nibble)
/// registers, signed 16-bit offset, signed 32-bit immediate.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    /// Opcode.
    pub code: u8,
    /// `dst_reg | src_reg << 4`.
    pub regs: u8,
    /// Offset.
    pub off: i16,
    /// Immediate.
    pub imm: i32,
}

impl Insn {
    /// The generic constructor (`BPF_RAW_INSN`).
    pub const fn raw(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Self {
        Insn {
            code,
            regs: (dst & 0xf) | (src << 4),
            off,
            imm,
        }
    }

    /// Destination register.
    pub const fn dst(&self) -> u8 {
        self.regs & 0xf
    }

    /// Source register.
    pub const fn src(&self) -> u8 {
        self.regs >> 4
    }

    /// The instruction as the kernel reads it (little-endian on the hosts
    /// this library supports).
    pub const fn to_bytes(self) -> [u8; 8] {
        let off = self.off.to_ne_bytes();
        let imm = self.imm.to_ne_bytes();
        [
            self.code, self.regs, off[0], off[1], imm[0], imm[1], imm[2], imm[3],
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

    #[test]
    fn encodings_match_the_kernel() {
        assert_eq!(mov64_reg(R6, R1).to_bytes(), [0xbf, 0x16, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            ldx_mem(BPF_W, R1, R6, 8).to_bytes(),
            [0x61, 0x61, 8, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            alu64_imm(BPF_LSH, R2, 32).to_bytes(),
            [0x67, 0x02, 0, 0, 32, 0, 0, 0]
        );
        assert_eq!(
            alu64_reg(BPF_OR, R2, R1).to_bytes(),
            [0x4f, 0x12, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            stx_mem(BPF_DW, R10, R2, -8).to_bytes(),
            [0x7b, 0x2a, 0xf8, 0xff, 0, 0, 0, 0]
        );
        assert_eq!(
            alu64_imm(BPF_ADD, R2, -8).to_bytes(),
            [0x07, 0x02, 0, 0, 0xf8, 0xff, 0xff, 0xff]
        );
        assert_eq!(
            ld_map_fd(R1, 5).map(Insn::to_bytes),
            [[0x18, 0x11, 0, 0, 5, 0, 0, 0], [0; 8]]
        );
        assert_eq!(
            ld_imm64(R2, 0xffff_ffff_0000_0000).map(Insn::to_bytes),
            [
                [0x18, 0x02, 0, 0, 0, 0, 0, 0],
                [0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]
            ]
        );
        assert_eq!(call(1).to_bytes(), [0x85, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(
            jmp_imm(BPF_JEQ, R1, 0, 5).to_bytes(),
            [0x15, 0x01, 5, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            jmp_reg(BPF_JEQ, R1, R2, 50).to_bytes(),
            [0x1d, 0x21, 50, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            mov64_imm(R1, -1).to_bytes(),
            [0xb7, 0x01, 0, 0, 0xff, 0xff, 0xff, 0xff]
        );
        assert_eq!(
            alu32_imm(BPF_AND, R3, 2).to_bytes(),
            [0x54, 0x03, 0, 0, 2, 0, 0, 0]
        );
        assert_eq!(exit().to_bytes(), [0x95, 0, 0, 0, 0, 0, 0, 0]);
    }
}
