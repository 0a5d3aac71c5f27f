// SPDX-License-Identifier: LGPL-2.1-or-later
//! A table's value built in memory: how many buckets, the random hash
//! multipliers, and where each rule goes (cuckoo placement). What
//! `Table::create` copies into a new map, and what the program's tests run
//! the interpreter on.
#![forbid(unsafe_code)]

use super::layout::*;
use crate::sys;
use crate::{Error, Result};
use std::collections::HashMap;

/// Bucket bits of a table holding up to `max` rules: two buckets (8
/// slots) per rule, so that a full table has an eighth of its slots used
/// and a new key almost always finds a free slot in one of its two
/// buckets (when it does not, the caller builds a new table with new
/// multipliers). A sparse table also keeps a key the first slot its probe
/// reads most of the time, so that an exact hit in a large table costs
/// about what it costs in a small one. The largest table keeps one bucket
/// per rule: 2^17 buckets would make a value larger than the kernel's
/// largest (`KMALLOC_MAX_SIZE`, 4 MiB). The bits are in the header, so a
/// table with any number of buckets per rule is read as it is.
fn bits_for(max: u32) -> Result<u32> {
    let buckets = max.max(2).checked_next_power_of_two().unwrap_or(u32::MAX);
    let bits = buckets.trailing_zeros();
    if bits > MAX_BUCKET_BITS || buckets == u32::MAX {
        return Err(Error::new(
            libc::E2BIG,
            format!(
                "a table of {max} rules is too large (at most {})",
                1u32 << MAX_BUCKET_BITS
            ),
        ));
    }
    Ok((bits + 1).min(MAX_BUCKET_BITS))
}

/// A table's value, made in memory: what `Table::create` copies into a new
/// map (and what the program's tests run on).
#[derive(Debug, Clone)]
pub struct Image {
    /// Bucket bits.
    pub bits: u32,
    /// The hash multipliers.
    pub mult: [u64; 2],
    /// The value, as native-endian words.
    pub words: Vec<u64>,
}

impl Image {
    /// The value of a table of capacity `max` holding `rules`.
    pub fn build(max: u32, rules: &HashMap<u64, u32>) -> Result<Image> {
        let mut bits = bits_for(max)?;
        let keyed: Vec<(u64, u64)> = rules
            .iter()
            .filter_map(|(&k, &v)| Some((slot_key(k)?, masks_of(v))))
            .collect();
        loop {
            for _ in 0..8 {
                let mult = random_mults();
                if let Some(slots) = place(&keyed, bits, mult) {
                    return Ok(Self::with_slots(max, bits, mult, rules, &slots));
                }
            }
            // Eight draws that cannot place the keys: more buckets.
            bits += 1;
            if bits > MAX_BUCKET_BITS {
                return Err(Error::new(
                    libc::E2BIG,
                    format!("cannot place {} rules in a table", rules.len()),
                ));
            }
        }
    }

    fn with_slots(
        max: u32,
        bits: u32,
        mult: [u64; 2],
        rules: &HashMap<u64, u32>,
        slots: &[u64],
    ) -> Image {
        let mut words = vec![0u64; value_size(bits) / 8];
        words[0] = MAGIC;
        words[MULT1_OFF / 8] = mult[0];
        words[MULT2_OFF / 8] = mult[1];
        words[BITS_OFF / 8] = bits as u64;
        words[MAX_OFF / 8] = max as u64;
        words[COUNT_OFF / 8] = rules.len() as u64;
        let mut majors = vec![0u32; 4096];
        let mut wild = 0;
        let mut any_minor = false;
        for (&key, &value) in rules {
            match slot_key(key) {
                None => wild |= masks_of(value),
                Some(k) => {
                    let k = k >> KEY_SHIFT;
                    let major = (k >> 22) as usize;
                    match k & 3 {
                        KIND_EXACT => majors[major] |= HAS_EXACT,
                        KIND_MAJOR => majors[major] |= masks_of(value) as u32,
                        _ => any_minor = true,
                    }
                }
            }
        }
        for m in majors.iter_mut() {
            *m |= wild as u32;
        }
        if any_minor {
            wild |= ANY_MINOR;
            words[FLAGS_OFF / 8] = MINOR_CODE;
        }
        words[WILD_OFF / 8] = wild;
        for (i, pair) in majors.chunks(2).enumerate() {
            let (a, b) = (pair[0].to_ne_bytes(), pair[1].to_ne_bytes());
            let bytes = [a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3]];
            words[MAJORS_OFF / 8 + i] = u64::from_ne_bytes(bytes);
        }
        words[BUCKETS_OFF / 8..].copy_from_slice(slots);
        Image { bits, mult, words }
    }

    #[cfg(any(test, feature = "testing"))]
    /// Whether the table's program has the `*:m` probe.
    pub fn minor_code(&self) -> bool {
        self.words[FLAGS_OFF / 8] & MINOR_CODE != 0
    }

    #[cfg(any(test, feature = "testing"))]
    /// The value as bytes.
    pub fn bytes(&self) -> Vec<u8> {
        self.words.iter().flat_map(|w| w.to_ne_bytes()).collect()
    }
}

/// Places every (slot key, masks) in `2^bits` buckets of 4 with the
/// multipliers `mult` (cuckoo placement: a key whose buckets are full
/// evicts one that moves to its other bucket), in a table that is not
/// in use. None when it does not fit.
fn place(keyed: &[(u64, u64)], bits: u32, mult: [u64; 2]) -> Option<Vec<u64>> {
    let mut slots = vec![0u64; SLOTS_PER_BUCKET << bits];
    let buckets = |key: u64| mult.map(|m| bucket(key, m, bits));
    let mut rng = mult[0] ^ mult[1].rotate_left(17);
    for &(key, masks) in keyed {
        let mut item = key | masks;
        let mut kicks = 0;
        'placing: loop {
            let k = item & !0xffff;
            for b in buckets(k) {
                let range = b * SLOTS_PER_BUCKET..(b + 1) * SLOTS_PER_BUCKET;
                if let Some(s) = range.clone().find(|&s| slots[s] == 0) {
                    slots[s] = item;
                    break 'placing;
                }
            }
            kicks += 1;
            if kicks > 500 {
                return None;
            }
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let b = buckets(k)[(rng & 1) as usize];
            let s = b * SLOTS_PER_BUCKET + (rng >> 1) as usize % SLOTS_PER_BUCKET;
            std::mem::swap(&mut slots[s], &mut item);
        }
    }
    Some(slots)
}

/// Two random odd multipliers (the kernel's entropy: one `getrandom(2)`).
fn random_mults() -> [u64; 2] {
    let mut b = [0u8; 16];
    if sys::getrandom(&mut b).is_err() {
        // Any odd multipliers work; poor ones only cost a retry.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let x = (t ^ 0x9e37_79b9_7f4a_7c15).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        b[..8].copy_from_slice(&x.to_ne_bytes());
        b[8..].copy_from_slice(
            &x.rotate_left(29)
                .wrapping_mul(0x94d0_49bb_1331_11eb)
                .to_ne_bytes(),
        );
    }
    let word = |i: usize| u64::from_ne_bytes(b[i..i + 8].try_into().expect("8 bytes")) | 1;
    [word(0), word(8)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::layout::slot_key;

    #[test]
    fn cuckoo_placement_places_every_key() {
        for n in [1usize, 10, 64, 1000, 10_000] {
            let max = (n as u32).next_power_of_two().max(64);
            let bits = bits_for(max).unwrap();
            let keyed: Vec<(u64, u64)> = (0..n as u64)
                .map(|i| (slot_key(((i % 4000) << 32) | (i / 4000)).unwrap(), 1))
                .collect();
            let placed = (0..8).find_map(|_| place(&keyed, bits, random_mults()));
            let slots = placed.unwrap_or_else(|| panic!("{n} keys in a table of {max}"));
            assert_eq!(slots.iter().filter(|&&s| s != 0).count(), n);
        }
    }
}
