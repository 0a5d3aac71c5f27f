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
//! | 80 | owner: the token of the writer that took the lock holding the cgroup's lock |
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
/// Owner word: a writer that holds the cgroup's writers' lock (a `flock`,
/// released by the kernel when the writer dies) stores its token here
/// before it takes the lock word. A lock word equal to the owner word is
/// held under the `flock`: whoever holds the `flock` knows that holder is
/// gone, in whatever PID namespace it ran.
pub const OWNER_OFF: usize = 80;
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
