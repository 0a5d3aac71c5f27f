// SPDX-License-Identifier: LGPL-2.1-or-later
//! Where everything is in format 5's maps: the rule map has libvirt's keys
//! and the rule encoding of `rules` as values; next to it, the wildcard
//! index.
//!
//! # The wildcard index
//!
//! Next to the rule map, an array map of [`INDEX_SLOTS`] `u32` words tells
//! the program which wildcard lookups can find anything, so that a device
//! no rule names costs one hash lookup instead of four. Array lookups are
//! inlined by the verifier (no hashing). Each word holds presence bits
//! ([`PRESENT`] at a type's position, [`INDEX_PRESENT`] for both):
//! - slot `M` (0-4095): the presence bits of the rule `M:*`;
//! - slot [`INDEX_GLOBAL`]: the presence bits of every `*:m` rule, ORed,
//!   and those of the `*:*` rule shifted right by one.
//!
//! The index may say more than the map (a lookup that finds nothing), never
//! less: a word gains bits before the rule that needs them is written and
//! loses them after that rule is gone, so a crash in between is harmless.
//!
//! One more slot, [`GENERATION_SLOT`], is bumped by every writer after it
//! changes the rule map, so that other processes know to read it again.
#![forbid(unsafe_code)]

use crate::rules::{split_key, BLOCK_SHIFT, CHAR_SHIFT, MAX_MAJOR, PRESENT};
use std::collections::HashMap;

/// The index slot holding the `*:m` and `*:*` presence bits.
pub const INDEX_GLOBAL: u32 = MAX_MAJOR + 1;
/// Slots in the index: one per major, and the global one.
pub const INDEX_SLOTS: u32 = INDEX_GLOBAL + 1;
/// The presence bits of both types.
pub const INDEX_PRESENT: u32 = PRESENT << BLOCK_SHIFT | PRESENT << CHAR_SHIFT;

/// The index slot and bits the rule entry `(key, value)` needs; None for
/// an exact rule (exact lookups are never skipped).
pub fn index_bits(key: u64, value: u32) -> Option<(u32, u32)> {
    let present = value & INDEX_PRESENT;
    match split_key(key) {
        (Some(_), Some(_)) => None,
        (Some(major), None) => Some((major, present)),
        (None, Some(_)) => Some((INDEX_GLOBAL, present)),
        (None, None) => Some((INDEX_GLOBAL, present >> 1)),
    }
}

/// Every non-zero word of the index for `rules`, by slot.
pub fn index_words(rules: &HashMap<u64, u32>) -> Vec<(u32, u32)> {
    let mut words: HashMap<u32, u32> = HashMap::new();
    for (slot, bits) in rules.iter().filter_map(|(&k, &v)| index_bits(k, v)) {
        *words.entry(slot).or_default() |= bits;
    }
    let mut words: Vec<(u32, u32)> = words.into_iter().filter(|&(_, w)| w != 0).collect();
    words.sort_unstable();
    words
}

/// The index slot every writer bumps after changing the rule map.
pub const GENERATION_SLOT: u32 = INDEX_GLOBAL + 1;
/// Slots of the format 5 index: one per major, the global one, the
/// generation.
pub const INDEX_ENTRIES: u32 = GENERATION_SLOT + 1;
