// SPDX-License-Identifier: LGPL-2.1-or-later
//! The programs of this library's earlier releases, so that a cgroup one of
//! them set up is recognised after a package upgrade (by the kernel's tag
//! of these exact instructions) and its map converted to the current
//! format. All of them were loaded under the name [`NAME`].
//!
//! | format | first commit | maps | value |
//! | --- | --- | --- | --- |
//! | 1 | a93ba94 | hash | block bits 0-2, char bits 8-10 (`BPF_DEVCG_ACC_*`) |
//! | 2 | d757e85 | hash | as 1, plus a presence bit per type (3, 11) |
//! | 3 | c229e5f | hash, index of 4097 | as 2 |
//! | 4 | ab618f1 | hash, index of 4097 | as 2 (format 5's instructions) |
//!
//! Formats 1-3 are kept as the bytes those releases loaded
//! (`legacy/f*.golden`, one instruction per line, little-endian, with
//! the map fd immediates replaced by 1 for the rule map and 2 for the
//! index); format 4's instructions are [`super::hash_program`]'s.
#![forbid(unsafe_code)]

use crate::insn::op::BPF_PSEUDO_MAP_FD;
use crate::insn::Insn;
use crate::rules::{BLOCK_SHIFT, CHAR_SHIFT, PRESENT};

/// The name every earlier release loaded its program with.
pub const NAME: &str = "vircgroup_v2dev";
/// Entries of the index of formats 3 and 4.
pub const INDEX_ENTRIES: u32 = 4097;

/// What an earlier release's program needs and holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Legacy {
    /// The format number.
    pub format: u32,
    /// Whether it reads an index next to its rule map.
    pub with_index: bool,
}

/// Every earlier format, oldest first.
pub const FORMATS: [Legacy; 4] = [
    Legacy {
        format: 1,
        with_index: false,
    },
    Legacy {
        format: 2,
        with_index: false,
    },
    Legacy {
        format: 3,
        with_index: true,
    },
    Legacy {
        format: 4,
        with_index: true,
    },
];

const GOLDEN: [&str; 3] = [
    include_str!("legacy/f1.golden"),
    include_str!("legacy/f2.golden"),
    include_str!("legacy/f3.golden"),
];

impl Legacy {
    /// The program this format's release loaded, for the rule map `rules`
    /// and (formats 3 and 4) the index `index`.
    pub fn program(&self, rules: i32, index: i32) -> Vec<Insn> {
        if self.format == 4 {
            return super::hash_program(rules, index);
        }
        GOLDEN[self.format as usize - 1]
            .lines()
            .map(|line| {
                let b: Vec<u8> = (0..8)
                    .map(|i| u8::from_str_radix(&line[2 * i..2 * i + 2], 16).expect("hex"))
                    .collect();
                let (dst, src) = (b[1] & 0xf, b[1] >> 4);
                let off = i16::from_le_bytes([b[2], b[3]]);
                let mut imm = i32::from_le_bytes([b[4], b[5], b[6], b[7]]);
                if b[0] == 0x18 && src == BPF_PSEUDO_MAP_FD {
                    imm = if imm == 2 { index } else { rules };
                }
                Insn::raw(b[0], dst, src, off, imm)
            })
            .collect()
    }

    /// A value of this format's rule map in the current encoding
    /// (`rules`); None when it is not one this format writes.
    pub fn convert(&self, value: u32) -> Option<u32> {
        if self.format > 1 {
            return crate::rules::valid_value(value).then_some(value);
        }
        // Format 1: permissions only; a type with any has a rule.
        if value == 0 || value & !(7 << BLOCK_SHIFT | 7 << CHAR_SHIFT) != 0 {
            return None;
        }
        Some([BLOCK_SHIFT, CHAR_SHIFT].iter().fold(0, |v, s| {
            if (value >> s) & 7 != 0 {
                v | (value & (7 << s)) | PRESENT << s
            } else {
                v
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earlier_programs_have_the_length_and_map_slots_they_had() {
        let lens: Vec<usize> = FORMATS.iter().map(|f| f.program(7, 9).len()).collect();
        assert_eq!(lens, [62, 63, 92, 92]);
        for f in FORMATS {
            let p = f.program(7, 9);
            let maps: Vec<(usize, i32)> = p
                .iter()
                .enumerate()
                .filter(|(_, i)| i.code == 0x18 && i.src() == BPF_PSEUDO_MAP_FD)
                .map(|(n, i)| (n, i.imm))
                .collect();
            assert!(maps.iter().any(|&(_, fd)| fd == 7), "format {}", f.format);
            assert_eq!(
                maps.iter().any(|&(_, fd)| fd == 9),
                f.with_index,
                "format {}",
                f.format
            );
            assert_eq!(p.last().unwrap().code, 0x95);
        }
    }

    #[test]
    fn format_1_values_gain_presence_bits() {
        let f1 = FORMATS[0];
        assert_eq!(f1.convert(0x0006), Some(0x000e));
        assert_eq!(f1.convert(0x0602), Some(0x0e0a));
        assert_eq!(f1.convert(0x0100), Some(0x0900));
        assert_eq!(f1.convert(0), None);
        assert_eq!(f1.convert(0x0008), None);
        assert_eq!(FORMATS[1].convert(0x0e0a), Some(0x0e0a));
        assert_eq!(FORMATS[1].convert(0x0006), None);
    }
}
