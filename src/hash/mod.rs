// SPDX-License-Identifier: LGPL-2.1-or-later
//! The maps of format 5, the program of kernels without mmapable arrays
//! (before Linux 5.5): a hash map of rules and an array index
//! (`program::hash`), changed with one `BPF_MAP_UPDATE_ELEM` or
//! `BPF_MAP_DELETE_ELEM` per rule.
//!
//! The kernel's maps are the truth. The library keeps a copy of the rules
//! so that a check or a count needs no walk of the map, and trusts it only
//! while the index's generation word ([`layout::GENERATION_SLOT`]) is the one it
//! last saw: every writer (in any process) bumps the word after each
//! change, with the cgroup's lock (`Cgroup::lock`) held, so a change made
//! by another process is seen at the next call and the copy read again.
//!
//! Fail-closed: a rule is one map element, written in one update, which
//! the kernel makes visible to the program in one step (the old element or
//! the new one). The index may say more than the map, never less: bits are
//! set before the rule that needs them is written and cleared only when the
//! maps are rebuilt.
#![forbid(unsafe_code)]

pub mod layout;

use crate::rules;
use crate::sys::{self, BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_HASH};
use crate::Result;
use layout::{index_bits, index_words, GENERATION_SLOT, INDEX_ENTRIES};
use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// The name of the rule map (`bpftool map show`).
pub const MAP_NAME: &str = "vcg2dev_f5_map";
/// The name of the index.
pub const INDEX_NAME: &str = "vcg2dev_f5_idx";

/// A format 5 rule map and index, and the copy of the rules.
#[derive(Debug)]
pub struct HashMaps {
    map: OwnedFd,
    index: OwnedFd,
    max: u32,
    rules: HashMap<u64, u32>,
    /// The index words known to be set in the kernel (a subset of what is
    /// set there, a superset of what `rules` needs).
    words: HashMap<u32, u32>,
    generation: u32,
}

impl HashMaps {
    /// New maps of capacity `max` holding `rules`, attached nowhere.
    pub fn create(max: u32, rules: HashMap<u64, u32>) -> Result<HashMaps> {
        let map = sys::map_create(BPF_MAP_TYPE_HASH, 8, 4, max, MAP_NAME)?;
        let entries: Vec<(u64, u32)> = rules.iter().map(|(&k, &v)| (k, v)).collect();
        sys::map_update_batch(map.as_fd(), &entries)?;
        Self::with_map(map, max, rules)
    }

    /// A new index next to `map` (a rule map of capacity `max` holding
    /// `rules`, attached nowhere): what `attach_prog` makes of a caller's
    /// map.
    pub fn with_map(map: OwnedFd, max: u32, rules: HashMap<u64, u32>) -> Result<HashMaps> {
        let index = sys::map_create(BPF_MAP_TYPE_ARRAY, 4, 4, INDEX_ENTRIES, INDEX_NAME)?;
        let words = index_words(&rules);
        sys::map_update_batch(index.as_fd(), &words)?;
        Ok(HashMaps {
            map,
            index,
            max,
            rules,
            words: words.into_iter().collect(),
            generation: 0,
        })
    }

    /// The maps of an attached format 5 program: the rules read, nothing
    /// written.
    pub fn adopt(map: OwnedFd, index: OwnedFd, max: u32) -> Result<HashMaps> {
        let mut h = HashMaps {
            map,
            index,
            max,
            rules: HashMap::new(),
            words: HashMap::new(),
            generation: 0,
        };
        h.reread()?;
        Ok(h)
    }

    fn reread(&mut self) -> Result<()> {
        self.generation = sys::map_lookup(self.index.as_fd(), GENERATION_SLOT)?.unwrap_or(0);
        self.rules = sys::map_entries(self.map.as_fd())?
            .into_iter()
            .filter(|&(k, v)| {
                let ok = rules::valid_entry(k, v);
                if !ok {
                    log::warn!(
                        "entry {k:#018x} = {v:#010x} of the rule map is not a rule: ignored"
                    );
                }
                ok
            })
            .collect();
        // Not read: a word is looked up the first time a rule needs it.
        self.words.clear();
        Ok(())
    }

    /// Reads the rules again when another writer changed them since this
    /// process last looked (the generation word moved). With the cgroup's
    /// lock held.
    pub fn refresh(&mut self) -> Result<()> {
        let now = sys::map_lookup(self.index.as_fd(), GENERATION_SLOT)?.unwrap_or(0);
        if now != self.generation {
            log::debug!(
                "the rule map changed since it was read (generation {now}): reading it again"
            );
            self.reread()?;
        }
        Ok(())
    }

    /// Sets `bits` in index word `slot` unless they are known to be set.
    fn widen(&mut self, slot: u32, bits: u32) -> Result<()> {
        let word = self.words.get(&slot).copied().unwrap_or(0);
        if word & bits != bits {
            let kernel = sys::map_lookup(self.index.as_fd(), slot)?.unwrap_or(0);
            if kernel & bits != bits {
                sys::map_update(self.index.as_fd(), slot, kernel | bits)?;
            }
            self.words.insert(slot, kernel | bits);
        }
        Ok(())
    }

    /// Sets `key`'s value (0 removes the rule), with the cgroup's lock held
    /// and the copy fresh. Ok(false) when the key is new and the map is
    /// full: nothing changed.
    pub fn put(&mut self, key: u64, value: u32) -> Result<bool> {
        let old = self.rules.get(&key).copied();
        if old == Some(value) || (old.is_none() && value == 0) {
            return Ok(true);
        }
        if old.is_none() && self.rules.len() >= self.max as usize {
            return Ok(false);
        }
        if value != 0 {
            if let Some((slot, bits)) = index_bits(key, value) {
                self.widen(slot, bits)?;
            }
        }
        // Told to every other writer before the change, so that the change
        // is the call's last step (a failure after it would leave the map
        // changed by a call that failed); a bump with no change after it
        // only makes others read the map again.
        let generation = self.generation.wrapping_add(1);
        sys::map_update(self.index.as_fd(), GENERATION_SLOT, generation)?;
        self.generation = generation;
        if value == 0 {
            sys::map_delete(self.map.as_fd(), key)?;
            self.rules.remove(&key);
        } else {
            sys::map_update(self.map.as_fd(), key, value)?;
            self.rules.insert(key, value);
        }
        Ok(true)
    }

    /// The rules (the copy, current while the cgroup's lock is held and
    /// after `refresh`).
    pub fn rules(&self) -> &HashMap<u64, u32> {
        &self.rules
    }

    /// The rule map.
    pub fn map(&self) -> BorrowedFd<'_> {
        self.map.as_fd()
    }

    /// The index.
    pub fn index(&self) -> BorrowedFd<'_> {
        self.index.as_fd()
    }

    /// Capacity.
    pub fn max(&self) -> u32 {
        self.max
    }
}
