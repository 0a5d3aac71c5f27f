// SPDX-License-Identifier: LGPL-2.1-or-later
//! Where everything is in the table map's value: offsets, the slot and
//! mask encodings, and the hash. Shared by the program (`program::table`)
//! and the code that writes the table, so the two cannot disagree.
//!
//! The value, all words native-endian `u64` unless said otherwise:
//!
//! | offset | what |
//! | --- | --- |
//! | 0 | magic: [`MAGIC`], the format in its low byte |
//! | 8, 16 | the two hash multipliers (odd; the program has them as immediates) |
//! | 24 | wild: bits 0-15 the masks of the `*:*` rule, bit 16 [`ANY_MINOR`] |
//! | 32 | bucket bits `b` (there are `2^b` buckets) |
//! | 40 | capacity in rules (`max`) |
//! | 48 | rules held (`count`) |
//! | 56 | [`MINOR_CODE`]: the program has the `*:m` probe |
//! | 64 | writers' lock: 0, or the holder's token |
//! | 72 | sequence: odd while a writer is changing the table |
//! | 128 | majors: one `u32` per major (below) |
//! | 16512 | buckets: `2^b` of 4 slots |
//!
//! A major's `u32`: bits 0-15 the masks that rule `M:*` and rule `*:*`
//! grant together (what the program reads for any device of that major:
//! one load, no lookup), bit 16 [`HAS_EXACT`] (a key `M:m` may exist). The
//! rules themselves are kept apart for the library: `*:*` in the wild word,
//! `M:*` as a slot; the majors' words are made from them.
//!
//! A slot is 0 (empty) or `key << 16 | masks`: key = `(dev << 2) | kind`,
//! dev = `major << 20 | minor` (0 in the wildcard half), kind
//! [`KIND_EXACT`], [`KIND_MAJOR`] (`M:*`) or [`KIND_MINOR`] (`*:m`); so bits
//! 38-49 hold the major, 18-37 the minor, 16-17 the kind. Masks: bits 0-7
//! the block rule, 8-15 the char rule; bit `a` of a type's byte is set when
//! the rule grants access `a` (`BPF_DEVCG_ACC_*` bits, so bit 0 is
//! `access(F_OK)`: the rule exists), i.e. when `a` is a subset of its
//! permissions. The masks of several rules are ORed: an access is granted
//! when one of the rules naming the device grants it, which is one bit.
#![forbid(unsafe_code)]

use crate::rules::{BLOCK_SHIFT, CHAR_SHIFT, PRESENT, WILDCARD};

/// `b"vcg2tab\0"` with the format number in the last byte.
pub const MAGIC: u64 = u64::from_be_bytes(*b"vcg2tab\0") | 6;
/// First hash multiplier.
pub const MULT1_OFF: usize = 8;
/// Second hash multiplier.
pub const MULT2_OFF: usize = 16;
/// The `*:*` masks and [`ANY_MINOR`].
pub const WILD_OFF: usize = 24;
/// Bucket bits.
pub const BITS_OFF: usize = 32;
/// Capacity in rules.
pub const MAX_OFF: usize = 40;
/// Rules held.
pub const COUNT_OFF: usize = 48;
/// [`MINOR_CODE`] or 0.
pub const FLAGS_OFF: usize = 56;
/// Writers' lock word.
pub const LOCK_OFF: usize = 64;
/// Sequence word.
pub const SEQ_OFF: usize = 72;
/// The per-major words.
pub const MAJORS_OFF: usize = 128;
/// Bytes of a major's word.
pub const MAJOR_WORD: usize = 4;
/// The first bucket.
pub const BUCKETS_OFF: usize = MAJORS_OFF + 4096 * MAJOR_WORD;

/// In wild: a `*:m` rule may exist (set before one is written, cleared
/// only when the table is rebuilt).
pub const ANY_MINOR: u64 = 1 << 16;
/// In a major's word: an exact key with this major may exist.
pub const HAS_EXACT: u32 = 1 << 16;
/// In the flags word: the table's program has the `*:m` probe (tables
/// without `*:m` rules get a program without it, which the kernel verifies
/// faster; the first `*:m` rule makes a new table and program).
pub const MINOR_CODE: u64 = 1;

/// Kind of an exact key.
pub const KIND_EXACT: u64 = 1;
/// Kind of an `M:*` key.
pub const KIND_MAJOR: u64 = 2;
/// Kind of a `*:m` key.
pub const KIND_MINOR: u64 = 3;
/// Where the key starts in a slot.
pub const KEY_SHIFT: u32 = 16;
/// Where a key's major starts in a slot.
pub const MAJOR_SHIFT: u32 = KEY_SHIFT + 2 + 20;
/// Where a key's minor starts in a slot.
pub const MINOR_SHIFT: u32 = KEY_SHIFT + 2;
/// Slots per bucket.
pub const SLOTS_PER_BUCKET: usize = 4;
/// log2 of a bucket's bytes.
pub const BUCKET_SHIFT: u32 = 5;
/// Largest table: 2^16 buckets (65,536 rules, a 2 MiB value).
pub const MAX_BUCKET_BITS: u32 = 16;
/// Highest major.
pub const MAX_MAJOR: u32 = 4095;

/// Bytes of the value of a table with `2^bits` buckets.
pub const fn value_size(bits: u32) -> usize {
    BUCKETS_OFF + ((SLOTS_PER_BUCKET * 8) << bits)
}

/// The bucket of `key` (already shifted, as it sits in a slot) for a
/// multiplier: what the program computes.
pub const fn bucket(key: u64, mult: u64, bits: u32) -> usize {
    (key.wrapping_mul(mult) >> (64 - bits)) as usize
}

/// The 16 mask bits of a value in the rule encoding (`rules`): for each
/// type with a rule, the bits of the access sets its permissions include.
pub fn masks_of(value: u32) -> u64 {
    let mut out = 0;
    for (shift, at) in [(BLOCK_SHIFT, 0), (CHAR_SHIFT, 8)] {
        let half = (value >> shift) & 0xf;
        if half & PRESENT == 0 {
            continue;
        }
        let perms = half & 7;
        for access in 0..8u32 {
            if access & !perms == 0 {
                out |= 1 << (at + access);
            }
        }
    }
    out
}

/// The value in the rule encoding of 16 mask bits; None when they are not
/// what [`masks_of`] makes (not a rule of this library).
pub fn value_of(masks: u64) -> Option<u32> {
    if masks >> 16 != 0 {
        return None;
    }
    let mut value = 0;
    for (shift, at) in [(BLOCK_SHIFT, 0), (CHAR_SHIFT, 8)] {
        let byte = (masks >> at) & 0xff;
        if byte == 0 {
            continue;
        }
        let perms = (0..8u32)
            .filter(|a| byte & 1 << a != 0)
            .fold(0, |p, a| p | a);
        value |= (perms | PRESENT) << shift;
    }
    (crate::rules::valid_value(value) && masks_of(value) == masks).then_some(value)
}

/// The slot key (as it sits in a slot: shifted) of a rule key; None for
/// `*:*`, which lives in the header.
pub fn slot_key(key: u64) -> Option<u64> {
    let (major, minor) = ((key >> 32) as u32, key as u32);
    let (dev, kind) = match (major != WILDCARD, minor != WILDCARD) {
        (true, true) => ((major as u64) << 20 | minor as u64, KIND_EXACT),
        (true, false) => ((major as u64) << 20, KIND_MAJOR),
        (false, true) => (minor as u64, KIND_MINOR),
        (false, false) => return None,
    };
    Some((dev << 2 | kind) << KEY_SHIFT)
}

/// The rule key of an occupied slot; None for a slot no writer of this
/// library makes.
pub fn rule_key(slot: u64) -> Option<u64> {
    let key = slot >> KEY_SHIFT;
    let (dev, kind) = (key >> 2, key & 3);
    let (major, minor) = (dev >> 20, dev & 0xf_ffff);
    if dev >> 32 != 0 {
        return None;
    }
    Some(match kind {
        KIND_EXACT => major << 32 | minor,
        KIND_MAJOR if minor == 0 => major << 32 | WILDCARD as u64,
        KIND_MINOR if major == 0 => (WILDCARD as u64) << 32 | minor,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules;

    #[test]
    fn masks_encode_every_subset_of_the_permissions() {
        // c 1:3 rw: char byte has bits 0 (F_OK), 2 (read), 4 (write), 6 (rw).
        let v = rules::Rule::new(b'c', 1, 3, rules::RW).unwrap().value();
        assert_eq!(masks_of(v), 0b0101_0101 << 8);
        assert_eq!(value_of(masks_of(v)), Some(v));
        let a = rules::Rule::new(b'a', -1, -1, rules::RWM).unwrap().value();
        assert_eq!(masks_of(a), 0xffff);
        for value in 1..0x1000u32 {
            if rules::valid_value(value) {
                assert_eq!(value_of(masks_of(value)), Some(value), "{value:#x}");
            }
        }
        // Not a principal downset: read and write without read-write.
        assert_eq!(value_of(0b0001_0101), None);
        assert_eq!(value_of(1), None);
        assert_eq!(value_of(1 << 16), None);
    }

    #[test]
    fn slot_keys_round_trip_and_never_collide() {
        let keys = [
            rules::key_of(Some(0), Some(0)),
            rules::key_of(Some(4095), Some(1_048_575)),
            rules::key_of(Some(136), None),
            rules::key_of(None, Some(77)),
            rules::key_of(Some(0), None),
            rules::key_of(None, Some(0)),
        ];
        let mut seen = std::collections::HashSet::new();
        for k in keys {
            let s = slot_key(k).unwrap();
            assert!(s >= 1 << KEY_SHIFT && s & 0xffff == 0);
            assert_eq!(rule_key(s), Some(k));
            assert!(seen.insert(s));
        }
        assert_eq!(slot_key(u64::MAX), None);
    }
}
