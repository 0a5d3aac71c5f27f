// SPDX-License-Identifier: LGPL-2.1-or-later
//! The library's device program on kernels that have `BPF_F_MMAPABLE`
//! (Linux 5.5) and `BPF_LD_MAP_VALUE` (5.2): every lookup is a plain load
//! from the rule table (see `table`), with no helper call and no hashing in
//! the kernel. Format [`FORMAT`], name [`NAME`].
#![forbid(unsafe_code)]

use super::asm::{Asm, Label};
use crate::insn::op::*;
use crate::insn::reg::*;
use crate::insn::*;
use crate::table::layout::*;
use crate::table::Table;
use std::os::fd::AsRawFd;

/// The format this program and its table are: the number in [`NAME`] and
/// in the table's magic word.
pub const FORMAT: u32 = 6;
/// The program's name: the format is readable from `bpftool prog show`.
pub const NAME: &str = "vcg2dev_f6";

const R4: u8 = 4;
const R5: u8 = 5;

/// The program for `table`: its map, bucket bits, multipliers and whether
/// it has `*:m` rules, all read from the table's header.
pub fn for_table(table: &Table) -> Vec<Insn> {
    let (bits, mult) = table.params();
    table_program(table.map().as_raw_fd(), bits, mult, table.has_minor_code())
}

/// The program for the table map `table` (fd) with `2^bits` buckets and
/// the hash multipliers `mult` (both in the table's header too); with the
/// `*:m` probe when `minor` (the table's `MINOR_CODE` flag).
///
/// ```c
/// SEC("cgroup/dev") int
/// vcg2dev_f6(struct bpf_cgroup_dev_ctx *ctx)
/// {
///     /* the bit of the type's 8-bit mask that grants this access:
///      * the BPF_DEVCG_ACC_* bits, plus 8 for a char device */
///     __u32 bit = (ctx->access_type >> 16) + ((ctx->access_type & 2) << 2);
///     __u64 major = ctx->major & 4095, minor = ctx->minor;
///     struct table *t = &table;                /* BPF_LD_MAP_VALUE: no lookup */
///     __u32 w = t->majors[major];              /* M:* and *:* masks, HAS_EXACT */
///
///     if ((w >> bit) & 1)
///         return 1;
///     if ((w & HAS_EXACT) && probe(t, major << 38 | minor << 18 | EXACT << 16, bit))
///         return 1;
/// #if MINOR                                    /* only in tables with *:m rules */
///     if ((t->wild & ANY_MINOR) && probe(t, minor << 18 | MINOR << 16, bit))
///         return 1;
/// #endif
///     return 0;
/// }
///
/// /* inlined: the key's two buckets, four slots each */
/// static bool probe(struct table *t, __u64 key, __u32 bit)
/// {
///     for (int h = 0; h < 2; h++) {
///         __u64 *bucket = t->buckets[(key * MULT[h]) >> (64 - BITS)];
///         for (int s = 0; s < 4; s++)
///             if ((bucket[s] ^ key) < 1 << 16) /* the key: only its masks are left */
///                 return ((bucket[s] ^ key) >> bit) & 1;
///     }
///     return false;
/// }
/// ```
///
/// The kernel's verifier time grows with the instructions it walks: with
/// one probe (no `*:m` rule) the program is about as long to verify as
/// libvirt's. The golden listing of the instructions is
/// `program/table.golden` (with the `*:m` probe).
pub fn table_program(table: i32, bits: u32, mult: [u64; 2], minor: bool) -> Vec<Insn> {
    assert!((1..=MAX_BUCKET_BITS).contains(&bits));
    let mut a = Asm::default();
    let [exact, after_exact, deny, allow] = [(); 4].map(|()| a.label());
    // r2 = access_type, r7 = major, r8 = minor
    a.emit(ldx_mem(BPF_W, R2, R1, 0));
    a.emit(ldx_mem(BPF_W, R7, R1, 4));
    a.emit(ldx_mem(BPF_W, R8, R1, 8));
    // r3 = bit = (access_type >> 16) + ((access_type & 2) << 2)
    a.emit(mov64_reg(R3, R2));
    a.emit(alu64_imm(BPF_RSH, R3, 16));
    a.emit(alu64_imm(BPF_AND, R2, 2));
    a.emit(alu64_imm(BPF_LSH, R2, 2));
    a.emit(alu64_reg(BPF_ADD, R3, R2));
    // r9 = &table: the map's value, its address put here at load time
    a.emit2(ld_map_value(R9, table, 0));
    // r2 = majors[major]: majors are 12 bits, and the mask bounds the load
    // for the verifier
    a.emit(alu64_imm(BPF_AND, R7, MAX_MAJOR as i32));
    a.emit(mov64_reg(R1, R7));
    a.emit(alu64_imm(BPF_LSH, R1, 2));
    a.emit(alu64_reg(BPF_ADD, R1, R9));
    a.emit(ldx_mem(BPF_W, R2, R1, MAJORS_OFF as i16));
    // an M:* or *:* rule grants it: allow
    a.emit(mov64_reg(R0, R2));
    a.emit(alu64_reg(BPF_RSH, R0, R3));
    a.jump(jmp_imm(BPF_JSET, R0, 1, 0), allow);
    a.jump(jmp_imm(BPF_JSET, R2, HAS_EXACT as i32, 0), exact);
    a.bind(after_exact);
    if minor {
        let minor = a.label();
        // r0 = wild: ANY_MINOR
        a.emit(ldx_mem(BPF_DW, R0, R9, WILD_OFF as i16));
        a.jump(jmp_imm(BPF_JSET, R0, ANY_MINOR as i32, 0), minor);
        a.bind(deny);
        a.emit(mov64_imm(R0, 0));
        a.emit(exit());
        // *:minor: r4 = minor << 18 | MINOR << 16
        a.bind(minor);
        a.emit(mov64_reg(R4, R8));
        a.emit(alu64_imm(BPF_LSH, R4, MINOR_SHIFT as i32));
        a.emit(alu64_imm(BPF_OR, R4, (KIND_MINOR << KEY_SHIFT) as i32));
        probe(&mut a, bits, mult, deny, allow);
    } else {
        a.bind(deny);
        a.emit(mov64_imm(R0, 0));
        a.emit(exit());
    }

    // exact: r4 = major << 38 | minor << 18 | EXACT << 16
    a.bind(exact);
    a.emit(mov64_reg(R4, R7));
    a.emit(alu64_imm(BPF_LSH, R4, MAJOR_SHIFT as i32));
    a.emit(mov64_reg(R5, R8));
    a.emit(alu64_imm(BPF_LSH, R5, MINOR_SHIFT as i32));
    a.emit(alu64_reg(BPF_OR, R4, R5));
    a.emit(alu64_imm(BPF_OR, R4, (KIND_EXACT << KEY_SHIFT) as i32));
    probe(&mut a, bits, mult, after_exact, allow);

    a.bind(allow);
    a.emit(mov64_imm(R0, 1));
    a.emit(exit());
    a.finish()
}
/// The two buckets of the key in r4, four slots each: a slot holding the
/// key allows when its mask bit `r3` is set; anything else goes on to
/// `next`. The decision is a branch, so the CPU need not wait for the
/// loads to know what to return.
fn probe(a: &mut Asm, bits: u32, mult: [u64; 2], next: Label, allow: Label) {
    let found = a.label();
    for m in mult {
        // r5 = &buckets[(key * m) >> (64 - bits)] - BUCKETS_OFF
        a.emit2(ld_imm64(R5, m));
        a.emit(alu64_reg(BPF_MUL, R5, R4));
        a.emit(alu64_imm(BPF_RSH, R5, 64 - bits as i32));
        a.emit(alu64_imm(BPF_LSH, R5, BUCKET_SHIFT as i32));
        a.emit(alu64_reg(BPF_ADD, R5, R9));
        for slot in 0..SLOTS_PER_BUCKET {
            // r0 = slot ^ key: below 1 << 16 exactly when the slot holds the key
            a.emit(ldx_mem(BPF_DW, R0, R5, (BUCKETS_OFF + 8 * slot) as i16));
            a.emit(alu64_reg(BPF_XOR, R0, R4));
            a.jump(jmp_imm(BPF_JLT, R0, 1 << KEY_SHIFT, 0), found);
        }
    }
    a.jump(ja(0), next);
    a.bind(found);
    a.emit(alu64_reg(BPF_RSH, R0, R3));
    a.jump(jmp_imm(BPF_JSET, R0, 1, 0), allow);
    a.jump(ja(0), next);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::program::{hash_program, interp};
    use crate::rules::{self, Rule, DEV_BLOCK, DEV_CHAR};
    use crate::table::Image;
    use crate::testing::disasm::disassemble;
    use crate::testing::{map_of, rule, rules_map};
    use std::collections::HashMap;

    /// The table program and the format 5 program (the reference: the
    /// releases before the table decided with it) on the same rules.
    struct Both {
        table: (Vec<Insn>, interp::Maps),
        hash: (Vec<Insn>, interp::Maps),
    }

    impl Both {
        fn new(rules: &HashMap<u64, u32>, max: u32) -> Both {
            let image = Image::build(max, rules).unwrap();
            let words = crate::hash::layout::index_words(rules)
                .into_iter()
                .collect();
            Both {
                table: (
                    table_program(3, image.bits, image.mult, image.minor_code()),
                    interp::Maps::from([(3, interp::Map::Value(image.bytes()))]),
                ),
                hash: (
                    hash_program(5, 6),
                    interp::Maps::from([
                        (5, interp::Map::Hash(rules.clone())),
                        (
                            6,
                            interp::Map::Array {
                                len: crate::hash::layout::INDEX_ENTRIES,
                                words,
                            },
                        ),
                    ]),
                ),
            }
        }

        fn agree(&self, ty: u32, acc: u32, major: u32, minor: u32) -> bool {
            let access = acc << 16 | ty;
            let t = interp::run(&self.table.0, &self.table.1, access, major, minor);
            let h = interp::run(&self.hash.0, &self.hash.1, access, major, minor);
            assert!(t <= 1);
            assert_eq!(t, h, "type {ty} access {acc} {major}:{minor}");
            t == 1
        }
    }

    #[test]
    fn decides_like_the_format_5_program() {
        let map = rules_map(&[
            "c 1:3 rw",
            "b 1:3 r",
            "c 136:* rw",
            "b *:7 m",
            "c 1:* m",
            "c *:3 w",
            "b *:3 w",
            "c 0:0 r",
            "b 4095:1048575 rwm",
        ]);
        let both = Both::new(&map, 64);
        let mut allowed = 0;
        for ty in [DEV_BLOCK, DEV_CHAR] {
            for acc in 0..8 {
                for (major, minor) in [
                    (1, 3),
                    (1, 4),
                    (136, 5),
                    (99, 7),
                    (2, 3),
                    (0, 0),
                    (4095, 1_048_575),
                    (5, 5),
                ] {
                    allowed += both.agree(ty, acc, major, minor) as u32;
                }
            }
        }
        assert!(allowed > 20, "{allowed}");
        // Nothing, and everything.
        let none = Both::new(&HashMap::new(), 64);
        assert!(!none.agree(DEV_CHAR, 2, 0, 0));
        let all = Both::new(&map_of(&[rule(b'a', -1, -1, rules::RWM)]), 64);
        assert!(all.agree(DEV_BLOCK, 7, 4095, 1_048_575));
        assert!(all.agree(DEV_CHAR, 0, 1, 1));
    }

    /// Random rule sets of every size class, probed on their own keys and
    /// around them.
    #[test]
    fn random_rule_sets_decide_like_the_format_5_program() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        for &n in &[1usize, 5, 30, 64, 200, 1000] {
            let mut list = Vec::new();
            for _ in 0..n {
                let ty = [b'a', b'b', b'c'][next(3) as usize];
                let major = if next(8) == 0 { -1 } else { next(20) as i32 };
                let minor = if next(8) == 0 { -1 } else { next(50) as i32 };
                list.push(rule(ty, major, minor, 1 + next(7) as i32));
            }
            let map = map_of(&list);
            let max = (map.len() as u32).next_power_of_two().max(64);
            let both = Both::new(&map, max);
            for _ in 0..2000 {
                let ty = [DEV_BLOCK, DEV_CHAR][next(2) as usize];
                both.agree(ty, next(8) as u32, next(22) as u32, next(52) as u32);
            }
        }
    }

    /// A full table of 16 slots (the smallest: 4 buckets): keys sit in
    /// their second bucket too, and the program finds every one of them
    /// there.
    #[test]
    fn keys_in_their_second_bucket_are_found() {
        use crate::table::layout::slot_key;
        use crate::table::layout::{bucket, BUCKETS_OFF};
        let mut in_second = 0;
        for round in 0..50 {
            let list: Vec<Rule> = (0..15)
                .map(|i| rule(b'c', 10 + round, i, rules::READ))
                .collect();
            let map = map_of(&list);
            let image = Image::build(2, &map).unwrap();
            let table = (
                table_program(3, image.bits, image.mult, image.minor_code()),
                interp::Maps::from([(3, interp::Map::Value(image.bytes()))]),
            );
            for r in &list {
                let k = slot_key(r.key()).unwrap();
                let first = bucket(k, image.mult[0], image.bits);
                let slots = &image.words[BUCKETS_OFF / 8 + first * 4..][..4];
                in_second += !slots.iter().any(|&s| s >> 16 == k >> 16) as u32;
                let access = 2 << 16 | DEV_CHAR;
                let (major, minor) = (r.major.unwrap(), r.minor.unwrap());
                assert_eq!(
                    interp::run(&table.0, &table.1, access, major, minor),
                    1,
                    "{r}"
                );
            }
        }
        assert!(
            in_second > 10,
            "only {in_second} keys in their second bucket"
        );
    }

    /// The instructions, as `program/table.golden` lists them (regenerate
    /// with `UPDATE_GOLDEN=1 cargo test --lib`): a change to the program is
    /// a change of format, which needs a new format number.
    #[test]
    fn matches_its_golden_listing() {
        let mult = [0x1111_1111_1111_1111, 0x2222_2222_2222_2223];
        let text = disassemble(&table_program(3, 5, mult, true))
            + "\n; without the *:m probe (no *:m rule in the table):\n"
            + &disassemble(&table_program(3, 5, mult, false));
        let golden = concat!(env!("CARGO_MANIFEST_DIR"), "/src/program/table.golden");
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(golden, &text).unwrap();
        }
        assert_eq!(text, std::fs::read_to_string(golden).unwrap());
    }
}
