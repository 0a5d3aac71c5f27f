// SPDX-License-Identifier: LGPL-2.1-or-later
//! libvirt's own device program (the seed), kept so that a cgroup set up by
//! libvirt's C code is recognised (by the kernel's tag of these exact
//! instructions), its map converted and its program replaced, and so that
//! the admin tool can hand a cgroup back to libvirt (`to-libvirt`).
#![forbid(unsafe_code)]

use crate::insn::op::*;
use crate::insn::reg::*;
use crate::insn::*;

/// libvirt's program (the seed, `virCgroupV2DevicesLoadProg`), instruction
/// for instruction. Its value is `access << 16 | type bits` under the key
/// `major << 32 | minor`; see the seed for the C source.
pub fn libvirt_program(mapfd: i32) -> Vec<Insn> {
    let [map0, map1] = ld_map_fd(R1, mapfd);
    let [ffff0, ffff1] = ld_imm64(R2, 0xffff_ffff);
    let [hi0, hi1] = ld_imm64(R2, 0xffff_ffff_0000_0000);
    vec![
        /*  0:  r6 = r1 */
        mov64_reg(R6, R1),
        /*  1:  r1 = *(u32 *)(r6 + 8) */
        ldx_mem(BPF_W, R1, R6, 8),
        /*  2:  r2 = *(u32 *)(r6 + 4) */
        ldx_mem(BPF_W, R2, R6, 4),
        /*  3:  r2 <<= 32 */
        alu64_imm(BPF_LSH, R2, 32),
        /*  4:  r2 |= r1 */
        alu64_reg(BPF_OR, R2, R1),
        /*  5:  *(u64 *)(r10 - 8) = r2 */
        stx_mem(BPF_DW, R10, R2, -8),
        /*  6:  r2 = r10 */
        mov64_reg(R2, R10),
        /*  7:  r2 += -8 */
        alu64_imm(BPF_ADD, R2, -8),
        /*  8:  r1 = 0 ll */
        map0,
        map1,
        /* 10:  call 1 */
        call(BPF_FUNC_MAP_LOOKUP_ELEM),
        /* 11:  r1 = r0 */
        mov64_reg(R1, R0),
        /* 12:  if r1 == 0 goto +5 <LBB0_2> */
        jmp_imm(BPF_JEQ, R1, 0, 5),
        /* 13:  r0 = 1 */
        mov64_imm(R0, 1),
        /* 14:  r2 = *(u32 *)(r6 + 0) */
        ldx_mem(BPF_W, R2, R6, 0),
        /* 15:  r1 = *(u32 *)(r1 + 0) */
        ldx_mem(BPF_W, R1, R1, 0),
        /* 16:  r1 &= r2 */
        alu64_reg(BPF_AND, R1, R2),
        /* 17:  if r1 == r2 goto +50 <LBB0_9> */
        jmp_reg(BPF_JEQ, R1, R2, 50),
        /* LBB0_2: */
        /* 18:  r1 = *(u32 *)(r6 + 4) */
        ldx_mem(BPF_W, R1, R6, 4),
        /* 19:  r1 <<= 32 */
        alu64_imm(BPF_LSH, R1, 32),
        /* 20:  r2 = 4294967295 ll */
        ffff0,
        ffff1,
        /* 22:  r1 |= r2 */
        alu64_reg(BPF_OR, R1, R2),
        /* 23:  *(u64 *)(r10 - 8) = r1 */
        stx_mem(BPF_DW, R10, R1, -8),
        /* 24:  r2 = r10 */
        mov64_reg(R2, R10),
        /* 25:  r2 += -8 */
        alu64_imm(BPF_ADD, R2, -8),
        /* 26:  r1 = 0 ll */
        map0,
        map1,
        /* 28:  call 1 */
        call(BPF_FUNC_MAP_LOOKUP_ELEM),
        /* 29:  r1 = r0 */
        mov64_reg(R1, R0),
        /* 30:  if r1 == 0 goto +5 <LBB0_4> */
        jmp_imm(BPF_JEQ, R1, 0, 5),
        /* 31:  r0 = 1 */
        mov64_imm(R0, 1),
        /* 32:  r2 = *(u32 *)(r6 + 0) */
        ldx_mem(BPF_W, R2, R6, 0),
        /* 33:  r1 = *(u32 *)(r1 + 0) */
        ldx_mem(BPF_W, R1, R1, 0),
        /* 34:  r1 &= r2 */
        alu64_reg(BPF_AND, R1, R2),
        /* 35:  if r1 == r2 goto +32 <LBB0_9> */
        jmp_reg(BPF_JEQ, R1, R2, 32),
        /* LBB0_4: */
        /* 36:  r1 = *(u32 *)(r6 + 8) */
        ldx_mem(BPF_W, R1, R6, 8),
        /* 37:  r2 = -4294967296 ll */
        hi0,
        hi1,
        /* 39:  r1 |= r2 */
        alu64_reg(BPF_OR, R1, R2),
        /* 40:  *(u64 *)(r10 - 8) = r1 */
        stx_mem(BPF_DW, R10, R1, -8),
        /* 41:  r2 = r10 */
        mov64_reg(R2, R10),
        /* 42:  r2 += -8 */
        alu64_imm(BPF_ADD, R2, -8),
        /* 43:  r1 = 0 ll */
        map0,
        map1,
        /* 45:  call 1 */
        call(BPF_FUNC_MAP_LOOKUP_ELEM),
        /* 46:  r1 = r0 */
        mov64_reg(R1, R0),
        /* 47:  if r1 == 0 goto +5 <LBB0_6> */
        jmp_imm(BPF_JEQ, R1, 0, 5),
        /* 48:  r0 = 1 */
        mov64_imm(R0, 1),
        /* 49:  r2 = *(u32 *)(r6 + 0) */
        ldx_mem(BPF_W, R2, R6, 0),
        /* 50:  r1 = *(u32 *)(r1 + 0) */
        ldx_mem(BPF_W, R1, R1, 0),
        /* 51:  r1 &= r2 */
        alu64_reg(BPF_AND, R1, R2),
        /* 52:  if r1 == r2 goto +15 <LBB0_9> */
        jmp_reg(BPF_JEQ, R1, R2, 15),
        /* LBB0_6: */
        /* 53:  r1 = -1 */
        mov64_imm(R1, -1),
        /* 54:  *(u64 *)(r10 - 8) = r1 */
        stx_mem(BPF_DW, R10, R1, -8),
        /* 55:  r2 = r10 */
        mov64_reg(R2, R10),
        /* 56:  r2 += -8 */
        alu64_imm(BPF_ADD, R2, -8),
        /* 57:  r1 = 0 ll */
        map0,
        map1,
        /* 59:  call 1 */
        call(BPF_FUNC_MAP_LOOKUP_ELEM),
        /* 60:  r1 = r0 */
        mov64_reg(R1, R0),
        /* 61:  if r1 == 0 goto +5 <LBB0_8> */
        jmp_imm(BPF_JEQ, R1, 0, 5),
        /* 62:  r0 = 1 */
        mov64_imm(R0, 1),
        /* 63:  r2 = *(u32 *)(r6 + 0) */
        ldx_mem(BPF_W, R2, R6, 0),
        /* 64:  r1 = *(u32 *)(r1 + 0) */
        ldx_mem(BPF_W, R1, R1, 0),
        /* 65:  r1 &= r2 */
        alu64_reg(BPF_AND, R1, R2),
        /* 66:  if r1 == r2 goto +1 <LBB0_9> */
        jmp_reg(BPF_JEQ, R1, R2, 1),
        /* LBB0_8: */
        /* 67:  r0 = 0 */
        mov64_imm(R0, 0),
        /* LBB0_9: */
        /* 68:  exit */
        exit(),
    ]
}
