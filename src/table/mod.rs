// SPDX-License-Identifier: LGPL-2.1-or-later
//! The rule table of format 6 (Linux 5.5 and later): one array map with one
//! value (`BPF_F_MMAPABLE`), mapped into every process that uses it, read
//! by the program (`program::table`) with plain loads. The kernel's memory
//! is the one copy of the rules: there is no cache to go stale, and a rule
//! another process wrote is seen by the next call.
//!
//! # What is atomic, and why a check never sees a half-made change
//!
//! Every word the program reads is written by userspace with one aligned
//! store of its natural size (an `AtomicU64` for the header and slots, an
//! `AtomicU32` for a major's word), and read by the program with one load
//! of the same size: on the 64-bit architectures the kernel JITs BPF for,
//! an aligned access is single-copy atomic, so the program sees the word
//! before or after a store, never a mix. A check reads each word it needs
//! once: its major's word (the `M:*` and `*:*` masks), then at most one
//! slot per probe. So a change of an exact or `*:m` rule is one slot
//! store, of `M:*` one store of its major's word (its slot is the
//! library's record), and of `*:*` one store per major's word: every check
//! sees the old rule or the new one for its device. The other bits a change
//! writes only widen what the program looks at: a major's `HAS_EXACT` and
//! `ANY_MINOR` are set before the slot is written (so a check that sees
//! the slot also looks for it; one that sees the bit before the slot finds
//! nothing, as before the change) and cleared only when the table is
//! rebuilt. Slots never move while the program may read them: an insert
//! takes a free slot of one of the key's two buckets, a delete empties its
//! slot, and a rule that finds no free slot makes the caller build a new
//! table (`install`), which replaces the program in one step. So at every
//! instant each check answers as the old policy or the new one.
//!
//! # Writers and readers in other processes
//!
//! Writers (this library in any process: the daemon, the admin tool) take
//! the table's lock, a word in the table itself, by compare-and-swap: no
//! system call while it is free. It holds the holder's token
//! (`process::new_beacon`): the id of a small BPF map the holder keeps open
//! until it exits, which stops resolving when it is gone, in whatever PID
//! namespace it ran. A holder that died (a process killed mid-change) is
//! recognised that way and its lock taken over; the count is then
//! recounted and the majors' words repaired. (An earlier release's token
//! is a pid and start time, judged as before.)
//! A change also makes the sequence word odd while it is under way, so
//! that a reader in another process (`check`, `list`) reads again instead
//! of reporting a mix; when the writer died half-way, the reader reads the
//! table as the program does ([`Table::allows`], [`Table::enforced`]):
//! that is what the kernel enforces until the next writer repairs it.
#![forbid(unsafe_code)]

mod image;
pub mod layout;

pub use image::Image;

use crate::process;
use crate::rules::{self, BLOCK_SHIFT, CHAR_SHIFT, PRESENT};
use crate::sys::{self, MapMemory, BPF_F_MMAPABLE, BPF_MAP_TYPE_ARRAY};
use crate::{Error, Result};
use layout::*;
use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The name of the table map (`bpftool map show`).
pub const MAP_NAME: &str = "vcg2dev_f6_tab";
/// How long a writer waits for another process's change to finish.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// A table map, mapped into this process.
#[derive(Debug)]
pub struct Table {
    map: OwnedFd,
    mem: MapMemory,
    bits: u32,
    mult: [u64; 2],
}

impl Table {
    /// A new table map of capacity `max` holding `rules` (keys and values
    /// in the rule encoding), not attached anywhere.
    pub fn create(max: u32, rules: &HashMap<u64, u32>) -> Result<Table> {
        let image = Image::build(max, rules)?;
        let size = value_size(image.bits);
        let map = sys::map_create_with(
            BPF_MAP_TYPE_ARRAY,
            4,
            size as u32,
            1,
            BPF_F_MMAPABLE,
            MAP_NAME,
        )?;
        let mem = MapMemory::map(map.as_fd(), size)?;
        // The map is attached nowhere yet: the attach that publishes it
        // orders these stores before any run of the program. The magic
        // goes last, so a table is only ever seen whole.
        for (i, &w) in image.words.iter().enumerate().skip(1) {
            if w != 0 {
                mem.word(8 * i).store(w, Ordering::Relaxed);
            }
        }
        mem.word(0).store(image.words[0], Ordering::Release);
        Ok(Table {
            map,
            mem,
            bits: image.bits,
            mult: image.mult,
        })
    }

    /// The table behind `map`, when it is one (an mmapable one-value array
    /// holding this format's magic); None when it is another map.
    pub fn open(map: OwnedFd) -> Result<Option<Table>> {
        let info = sys::map_info(map.as_fd())?;
        if info.map_type != BPF_MAP_TYPE_ARRAY
            || info.key_size != 4
            || info.max_entries != 1
            || info.map_flags & BPF_F_MMAPABLE == 0
            || (info.value_size as usize) < BUCKETS_OFF
        {
            return Ok(None);
        }
        let mem = MapMemory::map(map.as_fd(), info.value_size as usize)?;
        let word = |off: usize| mem.word(off).load(Ordering::Acquire);
        let bits = word(BITS_OFF);
        if word(0) != MAGIC
            || !(1..=MAX_BUCKET_BITS as u64).contains(&bits)
            || value_size(bits as u32) != info.value_size as usize
        {
            return Ok(None);
        }
        let mult = [word(MULT1_OFF), word(MULT2_OFF)];
        Ok(Some(Table {
            map,
            mem,
            bits: bits as u32,
            mult,
        }))
    }

    /// The map.
    pub fn map(&self) -> BorrowedFd<'_> {
        self.map.as_fd()
    }

    /// The map, given up (for `attach_prog`, whose caller's fd number it
    /// takes over).
    pub fn into_map(self) -> OwnedFd {
        self.map
    }

    /// Bucket bits and multipliers, which the program has as immediates.
    pub fn params(&self) -> (u32, [u64; 2]) {
        (self.bits, self.mult)
    }

    /// Capacity in rules.
    pub fn max(&self) -> u32 {
        self.header(MAX_OFF) as u32
    }

    /// Rules held (keys: a char and a block rule on the same numbers are
    /// one).
    pub fn count(&self) -> usize {
        self.header(COUNT_OFF) as usize
    }

    #[cfg(feature = "testing")]
    /// The value bytes, for the oracle's interpreter.
    pub fn bytes(&self) -> Vec<u8> {
        (0..self.mem.len() / 8)
            .flat_map(|i| self.word(8 * i).load(Ordering::Relaxed).to_ne_bytes())
            .collect()
    }

    fn header(&self, off: usize) -> u64 {
        self.word(off).load(Ordering::Acquire)
    }

    fn word(&self, off: usize) -> &AtomicU64 {
        self.mem.word(off)
    }

    fn slot(&self, i: usize) -> &AtomicU64 {
        self.word(BUCKETS_OFF + 8 * i)
    }

    /// The slot indices of `key`'s two buckets.
    fn candidates(&self, key: u64) -> impl Iterator<Item = usize> {
        let (bits, mult) = (self.bits, self.mult);
        mult.into_iter().flat_map(move |m| {
            let b = bucket(key, m, bits) * SLOTS_PER_BUCKET;
            b..b + SLOTS_PER_BUCKET
        })
    }

    /// Sets the program's hint for a new key before it is written: the
    /// major's `HAS_EXACT`, or `ANY_MINOR`. (`M:*` needs none: its masks go
    /// into the major's word.)
    fn mark(&self, key: u64) {
        let k = key >> KEY_SHIFT;
        match k & 3 {
            KIND_EXACT => {
                self.major_word((k >> 22) as usize)
                    .fetch_or(HAS_EXACT, Ordering::Release);
            }
            KIND_MINOR => {
                self.word(WILD_OFF).fetch_or(ANY_MINOR, Ordering::Release);
            }
            _ => {}
        }
    }

    fn major_word(&self, major: usize) -> &std::sync::atomic::AtomicU32 {
        self.mem.word32(MAJORS_OFF + MAJOR_WORD * major)
    }

    /// The masks the program reads for major `major`: those of its `M:*`
    /// rule and of the `*:*` rule, from the rules' own words.
    fn major_masks(&self, major: u32) -> u32 {
        let all = self.header(WILD_OFF) & 0xffff;
        let own = self
            .get(rules::key_of(Some(major), None))
            .map_or(0, masks_of);
        (own | all) as u32
    }

    /// Writes major `major`'s masks (keeping its `HAS_EXACT`) from the
    /// rules.
    fn refresh_major(&self, major: u32) {
        let w = self.major_word(major as usize);
        let hint = w.load(Ordering::Acquire) & HAS_EXACT;
        w.store(hint | self.major_masks(major), Ordering::Release);
    }

    /// Whether the table's program has the `*:m` probe.
    pub fn has_minor_code(&self) -> bool {
        self.header(FLAGS_OFF) & MINOR_CODE != 0
    }

    /// Runs `f` on a view of the table that no writer changed while `f`
    /// read it (the sequence word was even and the same before and after),
    /// retrying while a writer in another process is at work. When the
    /// writer died half-way the table is read as it is: that is what the
    /// kernel enforces.
    pub fn read<R>(&self, f: impl Fn(&Table) -> R) -> Result<R> {
        let seq = self.word(SEQ_OFF);
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            let before = seq.load(Ordering::Acquire);
            if before % 2 == 1 {
                let holder = self.header(LOCK_OFF);
                if holder != 0 && !process::holder_alive(holder) {
                    return Ok(f(self));
                }
            } else {
                let r = f(self);
                fence(Ordering::Acquire);
                if seq.load(Ordering::Relaxed) == before {
                    return Ok(r);
                }
            }
            if Instant::now() > deadline {
                return Err(self.busy());
            }
            backoff();
        }
    }

    /// The value of `key` (rule encoding), None when it has no rule. Read
    /// inside [`Table::read`] for a consistent answer.
    pub fn get(&self, key: u64) -> Option<u32> {
        match slot_key(key) {
            None => value_of(self.header(WILD_OFF) & 0xffff),
            Some(k) => self
                .candidates(k)
                .map(|i| self.slot(i).load(Ordering::Acquire))
                .find(|&s| s != 0 && s >> KEY_SHIFT == k >> KEY_SHIFT)
                .and_then(|s| value_of(s & 0xffff)),
        }
    }

    /// Every rule (key, value in the rule encoding). Slots no writer of this
    /// library makes are left out, with a warning.
    pub fn entries(&self) -> Vec<(u64, u32)> {
        let mut out = Vec::new();
        if let Some(v) = value_of(self.header(WILD_OFF) & 0xffff) {
            out.push((u64::MAX, v));
        }
        for i in 0..(SLOTS_PER_BUCKET << self.bits) {
            let s = self.slot(i).load(Ordering::Acquire);
            if s == 0 {
                continue;
            }
            match (rule_key(s), value_of(s & 0xffff)) {
                (Some(k), Some(v)) => out.push((k, v)),
                _ => log::warn!("slot {i} of table map holds {s:#018x}: not a rule, left out"),
            }
        }
        out
    }

    /// Whether `rule`'s access to every device it names is granted as the
    /// program decides it, from the words the program reads (the majors'
    /// words, the slots its hints lead to), not from the library's records
    /// of `M:*` and `*:*`: after a writer died between the stores of a
    /// change, this is still what the kernel enforces. Read inside
    /// [`Table::read`].
    pub fn allows(&self, rule: &rules::Rule) -> bool {
        let acc = rules::acc_bits(rule.perms) as u64;
        rule.ty.shifts().iter().all(|&at| {
            let bit = 1u64 << (at as u64 + acc);
            let word = |m: u32| self.major_word(m as usize).load(Ordering::Acquire) as u64;
            let exact = |m: u32, n: u32| {
                word(m) & HAS_EXACT as u64 != 0
                    && self.probe(rules::key_of(Some(m), Some(n))) & bit != 0
            };
            let minor = |n: u32| {
                self.has_minor_code()
                    && self.header(WILD_OFF) & ANY_MINOR != 0
                    && self.probe(rules::key_of(None, Some(n))) & bit != 0
            };
            match (rule.major, rule.minor) {
                (Some(m), Some(n)) => word(m) & bit != 0 || exact(m, n) || minor(n),
                (Some(m), None) => word(m) & bit != 0,
                (None, Some(n)) => {
                    minor(n) || (0..=MAX_MAJOR).all(|m| word(m) & bit != 0 || exact(m, n))
                }
                (None, None) => (0..=MAX_MAJOR).all(|m| word(m) & bit != 0),
            }
        })
    }

    /// The masks of the first slot holding `key` in its two buckets, as
    /// the program's probe finds it; 0 when none does.
    fn probe(&self, key: u64) -> u64 {
        let Some(k) = slot_key(key) else { return 0 };
        self.candidates(k)
            .map(|i| self.slot(i).load(Ordering::Acquire))
            .find(|&s| s != 0 && s >> KEY_SHIFT == k >> KEY_SHIFT)
            .map_or(0, |s| s & 0xffff)
    }

    /// The rules the program enforces (key, value in the rule encoding):
    /// [`Table::entries`] while the majors' words agree with the records of
    /// `M:*` and `*:*`; when a writer died between the stores of such a
    /// change, the majors' part is made from the majors' words themselves,
    /// which is what the program reads: a `*:*` rule for what every major
    /// grants, an `M:*` rule for what one grants beyond it. Read inside
    /// [`Table::read`].
    pub fn enforced(&self) -> Vec<(u64, u32)> {
        let mut out = self.entries();
        let words: Vec<u64> = (0..=MAX_MAJOR)
            .map(|m| (self.major_word(m as usize).load(Ordering::Acquire) & 0xffff) as u64)
            .collect();
        if (0..=MAX_MAJOR).all(|m| words[m as usize] == self.major_masks(m) as u64) {
            return out;
        }
        out.retain(|&(k, _)| matches!(rules::split_key(k), (Some(_), Some(_)) | (None, Some(_))));
        let common = words.iter().fold(0xffff, |a, w| a & w);
        let all = rules::key_of(None, None);
        out.extend(maximal_rules(common, 0).into_iter().map(|v| (all, v)));
        for (m, &w) in words.iter().enumerate() {
            let key = rules::key_of(Some(m as u32), None);
            out.extend(maximal_rules(w, common).into_iter().map(|v| (key, v)));
        }
        out
    }

    #[cfg(feature = "testing")]
    /// Whether what the program reads agrees with the rules: every major's
    /// masks are those of its `M:*` rule and of `*:*`, and the hints
    /// (`HAS_EXACT`, `ANY_MINOR`, the `*:m` probe) announce every rule.
    pub fn hints_cover(&self) -> bool {
        let wild = self.header(WILD_OFF);
        let masks_ok = (0..=MAX_MAJOR).all(|m| {
            self.major_word(m as usize).load(Ordering::Acquire) & 0xffff == self.major_masks(m)
        });
        masks_ok
            && (0..(SLOTS_PER_BUCKET << self.bits)).all(|i| {
                let s = self.slot(i).load(Ordering::Acquire);
                let k = s >> KEY_SHIFT;
                s == 0
                    || match k & 3 {
                        KIND_EXACT => {
                            self.major_word((k >> 22) as usize).load(Ordering::Acquire) & HAS_EXACT
                                != 0
                        }
                        KIND_MINOR => wild & ANY_MINOR != 0 && self.has_minor_code(),
                        _ => true,
                    }
            })
    }

    /// Takes the table's lock for the holder `me` (this process's token,
    /// `registry::token`): another process's change finishes first; a
    /// holder that died is taken over (and the count recounted, the
    /// majors' words repaired). No system call while the lock is free.
    pub fn lock(&self, me: u64) -> Result<Writer<'_>> {
        let lock = self.word(LOCK_OFF);
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            match lock.compare_exchange(0, me, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(Writer::new(self)),
                Err(holder) if holder != me && !process::holder_alive(holder) => {
                    if lock
                        .compare_exchange(holder, me, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        log::warn!(
                            "a writer died while changing the table of map fd {}: taking \
                             its lock over",
                            self.map.as_raw_fd()
                        );
                        return Ok(Writer::taken_over(self));
                    }
                }
                Err(_) => {}
            }
            if Instant::now() > deadline {
                return Err(self.busy());
            }
            backoff();
        }
    }

    fn busy(&self) -> Error {
        Error::new(
            libc::EAGAIN,
            format!(
                "the rule table (map fd {}) is being changed by process {} and it has not \
                 finished in {} s",
                self.map.as_raw_fd(),
                self.header(LOCK_OFF) >> 32,
                LOCK_WAIT.as_secs()
            ),
        )
    }
}

/// The rules (values in the rule encoding, one type each) whose masks
/// together are `masks`: for each type, one rule per largest access set
/// the masks grant, left out where `covered` (other rules' masks) grants it
/// already.
fn maximal_rules(masks: u64, covered: u64) -> Vec<u32> {
    let mut out = Vec::new();
    for shift in [BLOCK_SHIFT, CHAR_SHIFT] {
        let byte = (masks >> shift) & 0xff;
        let cov = (covered >> shift) & 0xff;
        for a in 1..8u32 {
            let granted = |x: u32| byte & 1 << x != 0;
            // The access set and all its subsets are granted (a rule's
            // masks), and no larger set is.
            let whole = (0..8u32).all(|x| x & !a != 0 || granted(x));
            let largest = !(1..8u32).any(|b| b != a && b & a == a && granted(b));
            if whole && largest && cov & 1 << a == 0 {
                out.push((a | PRESENT) << shift);
            }
        }
    }
    out
}

fn backoff() {
    std::thread::sleep(Duration::from_micros(50));
}

/// The table, locked for writing; unlocked on drop.
#[derive(Debug)]
pub struct Writer<'a> {
    table: &'a Table,
    /// Whether the sequence word was made odd by this writer.
    changing: std::cell::Cell<bool>,
}

impl<'a> Writer<'a> {
    fn new(table: &'a Table) -> Self {
        Writer {
            table,
            changing: std::cell::Cell::new(false),
        }
    }

    fn taken_over(table: &'a Table) -> Self {
        let w = Self::new(table);
        // The dead writer may have left the sequence odd and the count off.
        if table.word(SEQ_OFF).load(Ordering::Acquire) % 2 == 1 {
            w.changing.set(true);
        }
        let count = table.entries().len() as u64;
        if table.word(COUNT_OFF).swap(count, Ordering::AcqRel) != count {
            w.begin();
        }
        // And the majors' words half rewritten for a *:* change.
        for m in 0..=MAX_MAJOR {
            let word = table.major_word(m as usize).load(Ordering::Acquire);
            if word & 0xffff != table.major_masks(m) {
                w.begin();
                table.refresh_major(m);
            }
        }
        w
    }

    /// The table.
    pub fn table(&self) -> &Table {
        self.table
    }

    fn begin(&self) {
        if !self.changing.replace(true) {
            self.table.word(SEQ_OFF).fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Sets `key`'s value (rule encoding; 0 removes the rule). Ok(false)
    /// when the key is new and neither of its buckets has a free slot:
    /// nothing changed, and the caller builds a larger table.
    pub fn put(&self, key: u64, value: u32) -> Result<bool> {
        let t = self.table;
        let Some(k) = slot_key(key) else {
            self.put_wild(value);
            return Ok(true);
        };
        let count = t.word(COUNT_OFF);
        let kind = (k >> KEY_SHIFT) & 3;
        let new = if value == 0 { 0 } else { k | masks_of(value) };
        let held = t.candidates(k).find(|&i| {
            let s = t.slot(i).load(Ordering::Acquire);
            s != 0 && s >> KEY_SHIFT == k >> KEY_SHIFT
        });
        let slot = match held {
            Some(i) => {
                if t.slot(i).load(Ordering::Acquire) == new {
                    return Ok(true);
                }
                i
            }
            None if value == 0 => return Ok(true),
            None => {
                // A *:m rule needs the program with the *:m probe.
                if kind == KIND_MINOR && !t.has_minor_code() {
                    return Ok(false);
                }
                let Some(free) = t
                    .candidates(k)
                    .find(|&i| t.slot(i).load(Ordering::Acquire) == 0)
                else {
                    return Ok(false);
                };
                free
            }
        };
        self.begin();
        if held.is_none() {
            t.mark(k);
            count.fetch_add(1, Ordering::AcqRel);
        } else if new == 0 {
            count.fetch_sub(1, Ordering::AcqRel);
        }
        t.slot(slot).store(new, Ordering::Release);
        if kind == KIND_MAJOR {
            t.refresh_major((k >> (KEY_SHIFT + 22)) as u32);
        }
        Ok(true)
    }
}

impl Writer<'_> {
    /// Sets the `*:*` rule's value (0 removes it): its masks in the wild
    /// word, then in every major's word.
    fn put_wild(&self, value: u32) {
        let t = self.table;
        let count = t.word(COUNT_OFF);
        let wild = t.word(WILD_OFF);
        let old = wild.load(Ordering::Acquire);
        let new = (old & !0xffff) | masks_of(value);
        if new == old {
            return;
        }
        self.begin();
        wild.store(new, Ordering::Release);
        match (old & 0xffff != 0, value != 0) {
            (false, true) => count.fetch_add(1, Ordering::AcqRel),
            (true, false) => count.fetch_sub(1, Ordering::AcqRel),
            _ => 0,
        };
        // What every major's word says changes: one store each,
        // each the old masks or the new.
        for m in 0..=MAX_MAJOR {
            t.refresh_major(m);
        }
    }

    /// Removes every rule, in place: slot by slot, so that each check in
    /// between sees a subset of the old rules (the new policy, every device
    /// denied, is a subset of all of them); then the program's hints.
    pub fn clear(&self) {
        let t = self.table;
        self.begin();
        let wild = t.word(WILD_OFF);
        wild.fetch_and(!0xffff, Ordering::AcqRel);
        for i in 0..(SLOTS_PER_BUCKET << t.bits) {
            if t.slot(i).load(Ordering::Acquire) != 0 {
                t.slot(i).store(0, Ordering::Release);
            }
        }
        for m in 0..=MAX_MAJOR as usize {
            t.major_word(m).store(0, Ordering::Release);
        }
        wild.store(0, Ordering::Release);
        t.word(COUNT_OFF).store(0, Ordering::Release);
    }
}

impl Drop for Writer<'_> {
    fn drop(&mut self) {
        if self.changing.get() {
            self.table.word(SEQ_OFF).fetch_add(1, Ordering::AcqRel);
        }
        self.table.word(LOCK_OFF).store(0, Ordering::Release);
    }
}
