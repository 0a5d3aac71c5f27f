// SPDX-License-Identifier: LGPL-2.1-or-later
//! The library's device program on kernels without mmapable array maps
//! (before Linux 5.5): a hash map of rules and an array, the wildcard
//! index, looked up with `bpf_map_lookup_elem`. Format [`FORMAT`], name
//! [`NAME`]. Its instructions are those of format 4 (the releases before
//! the table), unchanged, so its tag is theirs: formats 4 and 5 differ in
//! their name and in the index, which in format 5 has one more slot, the
//! generation word (`hash::layout::GENERATION_SLOT`) that tells other writers that the
//! map changed.
#![forbid(unsafe_code)]

use crate::hash::layout::{INDEX_GLOBAL, INDEX_PRESENT};
use crate::insn::op::*;
use crate::insn::reg::*;
use crate::insn::*;

/// The format of this program and its maps.
pub const FORMAT: u32 = 5;
/// The program's name: the format is readable from `bpftool prog show`.
pub const NAME: &str = "vcg2dev_f5";
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
pub fn hash_program(rules: i32, index: i32) -> Vec<Insn> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Format 5's instructions never change (earlier releases' format 4
    /// has the same, and both are recognised by their tag): as hex, one
    /// instruction per line, fd 1 for the rule map and 2 for the index.
    #[test]
    fn matches_its_golden_listing() {
        let hex: String = hash_program(1, 2)
            .iter()
            .map(|i| {
                i.encode(false)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
                    + "\n"
            })
            .collect();
        let golden = concat!(env!("CARGO_MANIFEST_DIR"), "/src/program/hash.golden");
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(golden, &hex).unwrap();
        }
        assert_eq!(hex, std::fs::read_to_string(golden).unwrap());
    }
}
