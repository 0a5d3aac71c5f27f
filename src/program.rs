//! The device programs, hand-encoded one instruction per line, with the C
//! source they are equivalent to above them.
//!
//! [`device_program`] is the library's own program; [`libvirt_program`] is
//! the seed's (libvirt's C implementation), kept so that a cgroup set up by
//! libvirt can be recognised and its program replaced.
#![forbid(unsafe_code)]

use crate::insn::op::*;
use crate::insn::reg::*;
use crate::insn::*;
use crate::rules::{INDEX_GLOBAL, INDEX_PRESENT};

/// Program name given at load time, so the program can be recognised later
/// (at most 15 bytes: `BPF_OBJ_NAME_LEN` is 16 with the NUL).
pub const PROGRAM_NAME: &str = "vircgroup_v2dev";

/// The library's device program for the rule map `rules` and its wildcard
/// index `index`.
///
/// The map's keys are libvirt's (`major << 32 | minor`, `0xffffffff` as the
/// wildcard); each value holds the block rule in bits 0-3 and the char rule
/// in bits 8-11 (`BPF_DEVCG_ACC_*` bits and a presence bit), so a char rule
/// and a block rule on the same numbers are independent. The index (an
/// array, read without hashing) says which wildcard lookups can find a rule
/// of the device's type, so a device no rule names costs one hash lookup
/// instead of four. See `rules`.
///
/// ```c
/// SEC("cgroup/dev") int
/// vircgroup_v2dev(struct bpf_cgroup_dev_ctx *ctx)
/// {
///     /* BPF_DEVCG_DEV_BLOCK (1) checks bits 0-3, BPF_DEVCG_DEV_CHAR (2) bits 8-11;
///      * bit 3 (11) says a rule of the type exists, so access(F_OK), which asks
///      * for no access bit, is allowed only where a rule of the type is */
///     __u64 need = (__u64)((ctx->access_type >> 16) | 8) << ((ctx->access_type & 2) << 2);
///     __u64 dev = (__u64)ctx->major << 32 | ctx->minor;
///     __u64 bits, key;
///     __u32 slot, *val, *word;
///
///     key = dev;
///     val = bpf_map_lookup_elem(&rules, &key);
///     if (val && (*val & need) == need)
///         return 1;
///
///     /* the index bits of the type: 8 (*:m, major:*) and 4 (*:*) at its position */
///     bits = (need & 0x808) | (need & 0x808) >> 1;
///     slot = dev >> 32;
///     word = bpf_map_lookup_elem(&index, &slot);      /* major:* of the type? */
///     if (word && (*word & bits)) {
///         key = dev | 0xffffffff;
///         val = bpf_map_lookup_elem(&rules, &key);
///         if (val && (*val & need) == need)
///             return 1;
///     }
///
///     slot = 4096;                                    /* *:m and *:* */
///     word = bpf_map_lookup_elem(&index, &slot);
///     if (!word)
///         return 0;
///     bits &= *word;
///     if (bits & 0x808) {
///         key = dev | 0xffffffff00000000;
///         val = bpf_map_lookup_elem(&rules, &key);
///         if (val && (*val & need) == need)
///             return 1;
///     }
///     if (bits & 0x404) {
///         key = 0xffffffffffffffff;
///         val = bpf_map_lookup_elem(&rules, &key);
///         if (val && (*val & need) == need)
///             return 1;
///     }
///     return 0;
/// }
/// ```
pub fn device_program(rules: i32, index: i32) -> Vec<Insn> {
    let [map0, map1] = ld_map_fd(R1, rules);
    let [idx0, idx1] = ld_map_fd(R1, index);
    let present = INDEX_PRESENT as i32;
    vec![
        /*  0: r6 = *(u32 *)(r1 + 0)        access_type */
        ldx_mem(BPF_W, R6, R1, 0),
        /*  1: r3 = r6 */
        mov64_reg(R3, R6),
        /*  2: r3 &= 2                      BPF_DEVCG_DEV_CHAR bit */
        alu64_imm(BPF_AND, R3, 2),
        /*  3: r3 <<= 2                     shift: block 0, char 8 */
        alu64_imm(BPF_LSH, R3, 2),
        /*  4: r6 >>= 16                    access bits */
        alu64_imm(BPF_RSH, R6, 16),
        /*  5: r6 |= 8                      the type's presence bit */
        alu64_imm(BPF_OR, R6, 8),
        /*  6: r6 <<= r3                    need */
        alu64_reg(BPF_LSH, R6, R3),
        /* exact: key = major << 32 | minor */
        /*  7: r7 = *(u32 *)(r1 + 4)        major */
        ldx_mem(BPF_W, R7, R1, 4),
        /*  8: r7 <<= 32 */
        alu64_imm(BPF_LSH, R7, 32),
        /*  9: r2 = *(u32 *)(r1 + 8)        minor */
        ldx_mem(BPF_W, R2, R1, 8),
        /* 10: r7 |= r2                     key */
        alu64_reg(BPF_OR, R7, R2),
        /* 11: *(u64 *)(r10 - 8) = r7 */
        stx_mem(BPF_DW, R10, R7, -8),
        /* 12: r2 = r10 */
        mov64_reg(R2, R10),
        /* 13: r2 += -8 */
        alu64_imm(BPF_ADD, R2, -8),
        /* 14: r1 = rules ll */
        map0,
        map1,
        /* 16: call 1                       bpf_map_lookup_elem */
        call(BPF_FUNC_MAP_LOOKUP_ELEM),
        /* 17: if r0 == 0 goto +3 <21> */
        jmp_imm(BPF_JEQ, R0, 0, 3),
        /* 18: r1 = *(u32 *)(r0 + 0) */
        ldx_mem(BPF_W, R1, R0, 0),
        /* 19: r1 &= r6 */
        alu64_reg(BPF_AND, R1, R6),
        /* 20: if r1 == r6 goto +69 <90 allow> */
        jmp_reg(BPF_JEQ, R1, R6, 69),
        /* bits = (need & 0x808) | (need & 0x808) >> 1 */
        /* 21: r8 = r6 */
        mov64_reg(R8, R6),
        /* 22: r8 &= 0x808 */
        alu64_imm(BPF_AND, R8, present),
        /* 23: r1 = r8 */
        mov64_reg(R1, R8),
        /* 24: r1 >>= 1 */
        alu64_imm(BPF_RSH, R1, 1),
        /* 25: r8 |= r1 */
        alu64_reg(BPF_OR, R8, R1),
        /* major wildcard, when index[major] says there is one of the type */
        /* 26: r1 = r7 */
        mov64_reg(R1, R7),
        /* 27: r1 >>= 32 */
        alu64_imm(BPF_RSH, R1, 32),
        /* 28: *(u32 *)(r10 - 12) = r1      slot = major */
        stx_mem(BPF_W, R10, R1, -12),
        /* 29: r2 = r10 */
        mov64_reg(R2, R10),
        /* 30: r2 += -12 */
        alu64_imm(BPF_ADD, R2, -12),
        /* 31: r1 = index ll */
        idx0,
        idx1,
        /* 33: call 1                       inlined by the verifier for an array */
        call(BPF_FUNC_MAP_LOOKUP_ELEM),
        /* 34: if r0 == 0 goto +15 <50> */
        jmp_imm(BPF_JEQ, R0, 0, 15),
        /* 35: r1 = *(u32 *)(r0 + 0) */
        ldx_mem(BPF_W, R1, R0, 0),
        /* 36: r1 &= r8 */
        alu64_reg(BPF_AND, R1, R8),
        /* 37: if r1 == 0 goto +12 <50> */
        jmp_imm(BPF_JEQ, R1, 0, 12),
        /* 38: w1 = -1                      r1 = 0xffffffff */
        Insn::raw(BPF_ALU | BPF_MOV | BPF_K, R1, 0, 0, -1),
        /* 39: r1 |= r7                     key | 0xffffffff */
        alu64_reg(BPF_OR, R1, R7),
        /* 40: *(u64 *)(r10 - 8) = r1 */
        stx_mem(BPF_DW, R10, R1, -8),
        /* 41: r2 = r10 */
        mov64_reg(R2, R10),
        /* 42: r2 += -8 */
        alu64_imm(BPF_ADD, R2, -8),
        /* 43: r1 = rules ll */
        map0,
        map1,
        /* 45: call 1 */
        call(BPF_FUNC_MAP_LOOKUP_ELEM),
        /* 46: if r0 == 0 goto +3 <50> */
        jmp_imm(BPF_JEQ, R0, 0, 3),
        /* 47: r1 = *(u32 *)(r0 + 0) */
        ldx_mem(BPF_W, R1, R0, 0),
        /* 48: r1 &= r6 */
        alu64_reg(BPF_AND, R1, R6),
        /* 49: if r1 == r6 goto +40 <90 allow> */
        jmp_reg(BPF_JEQ, R1, R6, 40),
        /* the global slot: *:m and *:* rules of the type */
        /* 50: *(u32 *)(r10 - 12) = 4096 */
        st_mem(BPF_W, R10, -12, INDEX_GLOBAL as i32),
        /* 51: r2 = r10 */
        mov64_reg(R2, R10),
        /* 52: r2 += -12 */
        alu64_imm(BPF_ADD, R2, -12),
        /* 53: r1 = index ll */
        idx0,
        idx1,
        /* 55: call 1 */
        call(BPF_FUNC_MAP_LOOKUP_ELEM),
        /* 56: if r0 == 0 goto +31 <88 deny> */
        jmp_imm(BPF_JEQ, R0, 0, 31),
        /* 57: r1 = *(u32 *)(r0 + 0) */
        ldx_mem(BPF_W, R1, R0, 0),
        /* 58: r8 &= r1 */
        alu64_reg(BPF_AND, R8, R1),
        /* minor wildcard: key | 0xffffffff00000000 */
        /* 59: r1 = r8 */
        mov64_reg(R1, R8),
        /* 60: r1 &= 0x808 */
        alu64_imm(BPF_AND, R1, present),
        /* 61: if r1 == 0 goto +13 <75> */
        jmp_imm(BPF_JEQ, R1, 0, 13),
        /* 62: r1 = -1 */
        mov64_imm(R1, -1),
        /* 63: r1 <<= 32 */
        alu64_imm(BPF_LSH, R1, 32),
        /* 64: r1 |= r7 */
        alu64_reg(BPF_OR, R1, R7),
        /* 65: *(u64 *)(r10 - 8) = r1 */
        stx_mem(BPF_DW, R10, R1, -8),
        /* 66: r2 = r10 */
        mov64_reg(R2, R10),
        /* 67: r2 += -8 */
        alu64_imm(BPF_ADD, R2, -8),
        /* 68: r1 = rules ll */
        map0,
        map1,
        /* 70: call 1 */
        call(BPF_FUNC_MAP_LOOKUP_ELEM),
        /* 71: if r0 == 0 goto +3 <75> */
        jmp_imm(BPF_JEQ, R0, 0, 3),
        /* 72: r1 = *(u32 *)(r0 + 0) */
        ldx_mem(BPF_W, R1, R0, 0),
        /* 73: r1 &= r6 */
        alu64_reg(BPF_AND, R1, R6),
        /* 74: if r1 == r6 goto +15 <90 allow> */
        jmp_reg(BPF_JEQ, R1, R6, 15),
        /* all: key = 0xffffffffffffffff */
        /* 75: r8 &= 0x404 */
        alu64_imm(BPF_AND, R8, present >> 1),
        /* 76: if r8 == 0 goto +11 <88 deny> */
        jmp_imm(BPF_JEQ, R8, 0, 11),
        /* 77: r1 = -1 */
        mov64_imm(R1, -1),
        /* 78: *(u64 *)(r10 - 8) = r1 */
        stx_mem(BPF_DW, R10, R1, -8),
        /* 79: r2 = r10 */
        mov64_reg(R2, R10),
        /* 80: r2 += -8 */
        alu64_imm(BPF_ADD, R2, -8),
        /* 81: r1 = rules ll */
        map0,
        map1,
        /* 83: call 1 */
        call(BPF_FUNC_MAP_LOOKUP_ELEM),
        /* 84: if r0 == 0 goto +3 <88 deny> */
        jmp_imm(BPF_JEQ, R0, 0, 3),
        /* 85: r1 = *(u32 *)(r0 + 0) */
        ldx_mem(BPF_W, R1, R0, 0),
        /* 86: r1 &= r6 */
        alu64_reg(BPF_AND, R1, R6),
        /* 87: if r1 == r6 goto +2 <90 allow> */
        jmp_reg(BPF_JEQ, R1, R6, 2),
        /* deny: */
        /* 88: r0 = 0 */
        mov64_imm(R0, 0),
        /* 89: exit */
        exit(),
        /* allow: */
        /* 90: r0 = 1 */
        mov64_imm(R0, 1),
        /* 91: exit */
        exit(),
    ]
}

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

/// The instructions as the bytes the kernel receives.
pub fn to_bytes(prog: &[Insn]) -> Vec<u8> {
    prog.iter().flat_map(|i| i.to_bytes()).collect()
}

pub mod interp;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{self, Rule, DEV_BLOCK, DEV_CHAR};
    use std::collections::HashMap;

    /// The seed's program, one instruction per line as 16 hex digits
    /// (map fd 0); checked against the kernel's tag for it in
    /// tests/kernel.rs.
    const LIBVIRT_GOLDEN: &str = include_str!("program/libvirt.golden");

    fn hex(prog: &[Insn]) -> String {
        prog.iter()
            .map(|i| {
                i.to_bytes()
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
                    + "\n"
            })
            .collect()
    }

    #[test]
    fn libvirt_program_is_the_seed_byte_for_byte() {
        let prog = libvirt_program(0);
        assert_eq!(prog.len(), 69);
        assert_eq!(hex(&prog), LIBVIRT_GOLDEN);
        // Only the map fd slots change with the fd.
        let other = libvirt_program(7);
        let changed: Vec<usize> = (0..69).filter(|&i| prog[i] != other[i]).collect();
        assert_eq!(changed, vec![8, 26, 43, 57]);
        assert!(changed
            .iter()
            .all(|&i| other[i].imm == 7 && other[i].src() == 1));
    }

    #[test]
    fn every_jump_of_our_program_lands_inside_it() {
        let prog = device_program(3, 4);
        assert_eq!(prog.len(), 92);
        for (pc, i) in prog.iter().enumerate() {
            if i.code & 0x07 == crate::insn::op::BPF_JMP && i.code & 0xf0 == BPF_JEQ {
                let target = pc as i64 + 1 + i.off as i64;
                assert!((0..92).contains(&target), "jump at {pc} to {target}");
                // Every target is a label of the C source: a lookup block,
                // deny or allow.
                assert!(
                    [21, 50, 75, 88, 90].contains(&target),
                    "jump at {pc} to {target}"
                );
            }
        }
        assert_eq!(prog.last().unwrap().code, 0x95);
        // Only the map fd slots change with the fds.
        let other = device_program(7, 9);
        let changed: Vec<usize> = (0..92).filter(|&i| prog[i] != other[i]).collect();
        assert_eq!(changed, vec![14, 31, 43, 53, 68, 81]);
    }

    /// The index only ever skips lookups: with every bit set the program
    /// decides the same, and a wildcard rule the index does not announce is
    /// not seen (which is why the index is written before the rule).
    #[test]
    fn the_index_skips_lookups_and_nothing_else() {
        let map = map_of(&[
            rule(b'c', 136, -1, rules::RW),
            rule(b'b', -1, 7, rules::READ),
            rule(b'c', -1, -1, rules::MKNOD),
            rule(b'c', 1, 3, rules::RW),
        ]);
        let full: HashMap<u32, u32> = (0..rules::INDEX_SLOTS)
            .map(|s| (s, rules::INDEX_PRESENT | rules::INDEX_PRESENT >> 1))
            .collect();
        let (everything, exact) = (maps(&map), with_index(&map, full));
        let none = with_index(&map, HashMap::new());
        for ty in [DEV_BLOCK, DEV_CHAR] {
            for acc in 0..8 {
                for (major, minor) in [(136, 5), (1, 3), (9, 7), (0, 0), (4095, 1_048_575)] {
                    assert_eq!(
                        run_with(&everything, ty, acc, major, minor),
                        run_with(&exact, ty, acc, major, minor),
                        "type {ty} access {acc} {major}:{minor}"
                    );
                }
            }
        }
        assert!(run_with(&everything, DEV_CHAR, ACC_READ, 136, 5));
        assert!(!run_with(&none, DEV_CHAR, ACC_READ, 136, 5));
        assert!(run_with(&none, DEV_CHAR, ACC_READ, 1, 3));
        assert!(!run_with(&none, DEV_BLOCK, ACC_READ, 9, 7));
        assert!(!run_with(&none, DEV_CHAR, ACC_MKNOD, 2, 2));
        assert!(run_with(&everything, DEV_CHAR, ACC_MKNOD, 2, 2));
    }

    const ACC_MKNOD: u32 = 1;
    const ACC_READ: u32 = 2;
    const ACC_WRITE: u32 = 4;

    fn map_of(rules: &[Rule]) -> HashMap<u64, u32> {
        let mut map = HashMap::new();
        for r in rules {
            *map.entry(r.key()).or_insert(0) |= r.value();
        }
        map
    }

    /// Our program's maps (fds 3 and 4) for `rules`, with the index the
    /// library writes for them.
    fn maps(rules: &HashMap<u64, u32>) -> interp::Maps {
        let index = rules::index_words(rules).into_iter().collect();
        with_index(rules, index)
    }

    fn with_index(rules: &HashMap<u64, u32>, index: HashMap<u32, u32>) -> interp::Maps {
        interp::Maps::from([
            (3, interp::Map::Hash(rules.clone())),
            (
                4,
                interp::Map::Array {
                    len: rules::INDEX_SLOTS,
                    words: index,
                },
            ),
        ])
    }

    fn run_with(maps: &interp::Maps, ty: u32, acc: u32, major: u32, minor: u32) -> bool {
        let r0 = interp::run(&device_program(3, 4), maps, (acc << 16) | ty, major, minor);
        assert!(r0 <= 1);
        r0 == 1
    }

    fn run(map: &HashMap<u64, u32>, ty: u32, acc: u32, major: u32, minor: u32) -> bool {
        run_with(&maps(map), ty, acc, major, minor)
    }

    fn rule(t: u8, ma: i32, mi: i32, p: i32) -> Rule {
        Rule::new(t, ma, mi, p).unwrap()
    }

    #[test]
    fn our_program_decides_like_cgroup_v1() {
        let map = map_of(&[
            rule(b'c', 1, 3, rules::RW),
            rule(b'b', 1, 3, rules::READ),
            rule(b'c', 136, -1, rules::RW),
            rule(b'b', -1, 7, rules::MKNOD),
        ]);
        let (c, b) = (DEV_CHAR, DEV_BLOCK);
        let rw = ACC_READ | ACC_WRITE;
        assert!(run(&map, c, rw, 1, 3));
        assert!(run(&map, b, ACC_READ, 1, 3));
        assert!(!run(&map, b, rw, 1, 3));
        assert!(!run(&map, c, ACC_MKNOD, 1, 3));
        assert!(run(&map, c, rw, 136, 42));
        assert!(!run(&map, b, ACC_READ, 136, 42));
        assert!(run(&map, b, ACC_MKNOD, 99, 7));
        assert!(!run(&map, c, ACC_MKNOD, 99, 7));
        assert!(!run(&map, c, ACC_READ, 2, 3));
        // access(F_OK): no access bit; allowed only where a rule of the type is.
        assert!(run(&map, c, 0, 1, 3));
        assert!(run(&map, b, 0, 99, 7));
        assert!(!run(&map, c, 0, 99, 7));
        assert!(!run(&map, c, 0, 5, 5));
        // Nothing in the map: everything denied, device 0:0 too.
        let empty = HashMap::new();
        assert!(!run(&empty, c, ACC_READ, 0, 0));
        // Device 0:0 is a key like any other.
        assert!(run(
            &map_of(&[rule(b'c', 0, 0, rules::READ)]),
            c,
            ACC_READ,
            0,
            0
        ));
        let all = map_of(&[rule(b'a', -1, -1, rules::RWM)]);
        assert!(run(
            &all,
            b,
            ACC_READ | ACC_WRITE | ACC_MKNOD,
            4095,
            1_048_575
        ));
    }

    /// The program, `rules::allows` (what `check` uses) and the map agree on
    /// every type, access and device of a grid of rules.
    #[test]
    fn program_and_check_model_agree() {
        let map = map_of(&[
            rule(b'c', 1, 3, rules::RW),
            rule(b'b', 1, 3, rules::READ),
            rule(b'c', 1, -1, rules::MKNOD),
            rule(b'a', -1, 3, rules::WRITE),
            rule(b'b', 8, 0, rules::RWM),
        ]);
        for ty in [b'b', b'c'] {
            for perms in 1..=7 {
                for major in [0, 1, 2, 8] {
                    for minor in [0, 3, 4] {
                        let r = rule(ty, major, minor, perms);
                        let t = if ty == b'b' { DEV_BLOCK } else { DEV_CHAR };
                        let kernel =
                            run(&map, t, rules::acc_bits(perms), major as u32, minor as u32);
                        assert_eq!(rules::grants(&r, |k| map.get(&k).copied()), kernel, "{r}");
                    }
                }
            }
        }
    }

    #[test]
    fn libvirt_program_loses_a_char_rule_to_a_block_rule() {
        // What the seed's program does with libvirt's map after
        // "c 1:3 rw" then "b 1:3 r": one key, the block value won.
        let mut map = HashMap::new();
        map.insert(rules::get_key(1, 3), rules::get_perms(rules::RW, b'c'));
        map.insert(rules::get_key(1, 3), rules::get_perms(rules::READ, b'b'));
        let rw = (ACC_READ | ACC_WRITE) << 16;
        let maps = interp::Maps::from([(3, interp::Map::Hash(map))]);
        assert_eq!(
            interp::run(&libvirt_program(3), &maps, rw | DEV_CHAR, 1, 3),
            0
        );
        // Ours keeps both.
        let ours = map_of(&[rule(b'c', 1, 3, rules::RW), rule(b'b', 1, 3, rules::READ)]);
        assert!(run(&ours, DEV_CHAR, ACC_READ | ACC_WRITE, 1, 3));
    }
}
