// SPDX-License-Identifier: LGPL-2.1-or-later
//! The device programs, hand-encoded, with the C source they are
//! equivalent to above them:
//!
//! | file | program | maps | format |
//! | --- | --- | --- | --- |
//! | `table.rs` | ours, Linux 5.5 and later | one mmapable array: the rule table | 6 |
//! | `hash.rs` | ours, before 5.5 | a hash map of rules and an array index | 5 |
//! | `legacy.rs` | earlier releases of this library | hash (and index) | 1-4 |
//! | `libvirt.rs` | libvirt's C code (the seed) | a hash map | - |
//!
//! A program is recognised by its name and by the kernel's tag of its
//! instructions (`recognise`); the format is in the name
//! (`vcg2dev_f6`), so `bpftool prog show` tells which release's layout a
//! cgroup has.
#![forbid(unsafe_code)]

pub mod asm;
pub mod hash;
#[cfg(any(test, feature = "testing"))]
pub mod interp;
pub mod legacy;
pub mod libvirt;
pub mod table;

pub use hash::hash_program;
pub use libvirt::libvirt_program;
pub use table::table_program;

/// The license the programs are loaded with.
pub const LICENSE: &str = "GPL";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::insn::op::BPF_JEQ;
    use crate::insn::Insn;
    use crate::rules::{self, DEV_BLOCK, DEV_CHAR};
    use crate::testing::{map_of, rule, rules_map};
    use std::collections::HashMap;

    /// The seed's program, one instruction per line as 16 hex digits
    /// (map fd 0); checked against the kernel's tag for it in
    /// tests/kernel.rs.
    const LIBVIRT_GOLDEN: &str = include_str!("libvirt.golden");

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
        let prog = hash_program(3, 4);
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
        let other = hash_program(7, 9);
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
        let full: HashMap<u32, u32> = (0..crate::hash::layout::INDEX_SLOTS)
            .map(|s| {
                (
                    s,
                    crate::hash::layout::INDEX_PRESENT | crate::hash::layout::INDEX_PRESENT >> 1,
                )
            })
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

    /// Our program's maps (fds 3 and 4) for `rules`, with the index the
    /// library writes for them.
    fn maps(rules: &HashMap<u64, u32>) -> interp::Maps {
        let index = crate::hash::layout::index_words(rules)
            .into_iter()
            .collect();
        with_index(rules, index)
    }

    fn with_index(rules: &HashMap<u64, u32>, index: HashMap<u32, u32>) -> interp::Maps {
        interp::Maps::from([
            (3, interp::Map::Hash(rules.clone())),
            (
                4,
                interp::Map::Array {
                    len: crate::hash::layout::INDEX_SLOTS,
                    words: index,
                },
            ),
        ])
    }

    fn run_with(maps: &interp::Maps, ty: u32, acc: u32, major: u32, minor: u32) -> bool {
        let r0 = interp::run(&hash_program(3, 4), maps, (acc << 16) | ty, major, minor);
        assert!(r0 <= 1);
        r0 == 1
    }

    fn run(map: &HashMap<u64, u32>, ty: u32, acc: u32, major: u32, minor: u32) -> bool {
        run_with(&maps(map), ty, acc, major, minor)
    }

    #[test]
    fn our_program_decides_like_cgroup_v1() {
        let map = rules_map(&["c 1:3 rw", "b 1:3 r", "c 136:* rw", "b *:7 m"]);
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
        let map = rules_map(&[
            "c 1:3 rw",
            "b 1:3 r",
            "c 1:* m",
            "c *:3 w",
            "b *:3 w",
            "b 8:0 rwm",
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
