// SPDX-License-Identifier: LGPL-2.1-or-later
//! Device rules: validation, the map encoding and libvirt's encoding.
//! Their cgroup v1 text, parsed and printed, is `text.rs`.
//!
//! # The map encoding
//!
//! Key: libvirt's, `(u64)major << 32 | (u32)minor`, with `0xffffffff` in
//! either half as the wildcard (`*`).
//!
//! Value: unlike libvirt's (`access << 16 | type bits`, one type per key, so a
//! block rule overwrites a char rule on the same numbers), one value holds
//! both rules on those numbers: bits 0-3 the block rule, bits 8-11 the char
//! rule, each as `BPF_DEVCG_ACC_*` bits (mknod 1, read 2, write 4) plus 8,
//! set exactly when the rule exists (so that `access(F_OK)`, which the
//! kernel checks with no access bit, is allowed only where a rule of the
//! device's type is, as in cgroup v1). An `a` rule sets both. No other bit
//! is ever set and a value is never 0 (the entry is deleted instead).
#![forbid(unsafe_code)]

mod text;

pub use text::*;

use crate::{Error, Result};

/// `VIR_CGROUP_DEVICE_READ`.
pub const READ: i32 = 1;
/// `VIR_CGROUP_DEVICE_WRITE`.
pub const WRITE: i32 = 2;
/// `VIR_CGROUP_DEVICE_MKNOD`.
pub const MKNOD: i32 = 4;
/// `VIR_CGROUP_DEVICE_RW`.
pub const RW: i32 = READ | WRITE;
/// `VIR_CGROUP_DEVICE_RWM`.
pub const RWM: i32 = RW | MKNOD;

/// Highest major number the kernel uses (12 bits).
pub const MAX_MAJOR: u32 = 4095;
/// Highest minor number the kernel uses (20 bits).
pub const MAX_MINOR: u32 = 1_048_575;
/// Wildcard half of a key.
pub const WILDCARD: u32 = 0xffff_ffff;

/// `BPF_DEVCG_ACC_MKNOD`.
pub const ACC_MKNOD: u32 = 1;
/// `BPF_DEVCG_ACC_READ`.
pub const ACC_READ: u32 = 2;
/// `BPF_DEVCG_ACC_WRITE`.
pub const ACC_WRITE: u32 = 4;
/// `BPF_DEVCG_DEV_BLOCK`.
pub const DEV_BLOCK: u32 = 1;
/// `BPF_DEVCG_DEV_CHAR`.
pub const DEV_CHAR: u32 = 2;

/// Bit position of the block rule in a value.
pub const BLOCK_SHIFT: u32 = 0;
/// Bit position of the char rule in a value.
pub const CHAR_SHIFT: u32 = 8;
/// Set (at a rule's position) exactly when the rule exists.
pub const PRESENT: u32 = 8;
const HALF: u32 = PRESENT | 7;
const SHIFTS: [u32; 2] = [BLOCK_SHIFT, CHAR_SHIFT];

/// Device type of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DevType {
    /// `a`: both.
    All,
    /// `b`.
    Block,
    /// `c`.
    Char,
}

impl DevType {
    /// Parses `'a'`, `'b'` or `'c'`.
    pub fn from_char(c: u8) -> Result<Self> {
        match c {
            b'a' => Ok(DevType::All),
            b'b' => Ok(DevType::Block),
            b'c' => Ok(DevType::Char),
            _ => Err(Error::invalid(format!(
                "invalid device type {} (expected 'a', 'b' or 'c')",
                describe_char(c)
            ))),
        }
    }

    /// The cgroup v1 letter.
    pub fn letter(self) -> char {
        match self {
            DevType::All => 'a',
            DevType::Block => 'b',
            DevType::Char => 'c',
        }
    }

    /// The bit positions of this type's permissions in a value.
    pub fn shifts(self) -> &'static [u32] {
        match self {
            DevType::All => &[BLOCK_SHIFT, CHAR_SHIFT],
            DevType::Block => &[BLOCK_SHIFT],
            DevType::Char => &[CHAR_SHIFT],
        }
    }
}

fn describe_char(c: u8) -> String {
    if c.is_ascii_graphic() {
        format!("'{}'", c as char)
    } else {
        format!("{c:#04x}")
    }
}

/// A validated rule: type, numbers (None is `*`) and `VIR_CGROUP_DEVICE_*` permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Type.
    pub ty: DevType,
    /// Major number, None for any.
    pub major: Option<u32>,
    /// Minor number, None for any.
    pub minor: Option<u32>,
    /// `VIR_CGROUP_DEVICE_*` bits, 1..=7.
    pub perms: i32,
}

fn number(what: &str, n: i32, max: u32) -> Result<Option<u32>> {
    match n {
        -1 => Ok(None),
        0.. if n as u32 <= max => Ok(Some(n as u32)),
        _ => Err(Error::invalid(format!(
            "invalid {what} number {n} (expected 0-{max}, or -1 for any)"
        ))),
    }
}

/// Checks `VIR_CGROUP_DEVICE_*` permissions: at least one bit, none outside RWM.
pub fn check_perms(perms: i32) -> Result<i32> {
    if perms <= 0 || perms & !RWM != 0 {
        return Err(Error::invalid(format!(
            "invalid permissions {perms} (expected a non-empty combination of \
             VIRCGROUP_DEVICE_READ 1, _WRITE 2 and _MKNOD 4)"
        )));
    }
    Ok(perms)
}

impl Rule {
    /// Validates C arguments into a rule.
    pub fn new(ty: u8, major: i32, minor: i32, perms: i32) -> Result<Self> {
        Ok(Rule {
            ty: DevType::from_char(ty)?,
            major: number("major", major, MAX_MAJOR)?,
            minor: number("minor", minor, MAX_MINOR)?,
            perms: check_perms(perms)?,
        })
    }

    /// Whether this rule names every device (`a *:*`).
    pub fn every_device(&self) -> bool {
        self.ty == DevType::All && self.major.is_none() && self.minor.is_none()
    }

    /// The map key.
    pub fn key(&self) -> u64 {
        key_of(self.major, self.minor)
    }

    /// The value bits this rule grants (with the presence bits).
    pub fn value(&self) -> u32 {
        let acc = acc_bits(self.perms) | PRESENT;
        self.ty.shifts().iter().fold(0, |v, s| v | acc << s)
    }

    /// `value` with this rule's permissions taken away; a type left with
    /// no permission loses its presence bit. 0 means no rule is left.
    pub fn remove_from(&self, value: u32) -> u32 {
        let acc = acc_bits(self.perms);
        let mut v = self.ty.shifts().iter().fold(value, |v, s| v & !(acc << s));
        for s in SHIFTS {
            if (v >> s) & 7 == 0 {
                v &= !(HALF << s);
            }
        }
        v
    }
}

/// The key for numbers (None is `*`).
pub fn key_of(major: Option<u32>, minor: Option<u32>) -> u64 {
    (u64::from(major.unwrap_or(WILDCARD)) << 32) | u64::from(minor.unwrap_or(WILDCARD))
}

/// A key's major and minor, None where it has the wildcard.
pub fn split_key(key: u64) -> (Option<u32>, Option<u32>) {
    let half = |h: u32| (h != WILDCARD).then_some(h);
    (half((key >> 32) as u32), half(key as u32))
}

/// libvirt's `virCgroupV2DevicesGetKey`.
pub fn get_key(major: i32, minor: i32) -> u64 {
    (u64::from(major as u32) << 32) | u64::from(minor as u32)
}

/// Each `VIR_CGROUP_DEVICE_*` bit and its `BPF_DEVCG_ACC_*` bit.
const PERM_BITS: [(i32, u32); 3] = [(READ, ACC_READ), (WRITE, ACC_WRITE), (MKNOD, ACC_MKNOD)];

/// `VIR_CGROUP_DEVICE_*` bits -> `BPF_DEVCG_ACC_*` bits.
pub fn acc_bits(perms: i32) -> u32 {
    PERM_BITS
        .iter()
        .filter(|&&(vir, _)| perms & vir != 0)
        .fold(0, |acc, &(_, bit)| acc | bit)
}

/// `BPF_DEVCG_ACC_*` bits -> `VIR_CGROUP_DEVICE_*` bits.
pub fn vir_perms(acc: u32) -> i32 {
    PERM_BITS
        .iter()
        .filter(|&&(_, bit)| acc & bit != 0)
        .fold(0, |perms, &(vir, _)| perms | vir)
}

/// libvirt's `virCgroupV2DevicesGetPerms`: `access << 16 | type bits`.
pub fn get_perms(perms: i32, ty: u8) -> u32 {
    let types = match ty {
        b'b' => DEV_BLOCK,
        b'c' => DEV_CHAR,
        _ => DEV_BLOCK | DEV_CHAR,
    };
    (acc_bits(perms) << 16) | types
}

/// Converts a value written by libvirt's C code into this library's value;
/// None when it is not one libvirt writes.
pub fn from_libvirt_value(v: u32) -> Option<u32> {
    let (acc, types) = ((v >> 16) & 7, v & 3);
    if v & !(0x7_0003) != 0 || acc == 0 || types == 0 {
        return None;
    }
    let mut out = 0;
    if types & DEV_BLOCK != 0 {
        out |= (acc | PRESENT) << BLOCK_SHIFT;
    }
    if types & DEV_CHAR != 0 {
        out |= (acc | PRESENT) << CHAR_SHIFT;
    }
    Some(out)
}

/// Whether a (key, value) pair is in this library's encoding.
pub fn valid_entry(key: u64, value: u32) -> bool {
    let (major, minor) = split_key(key);
    major.is_none_or(|m| m <= MAX_MAJOR)
        && minor.is_none_or(|m| m <= MAX_MINOR)
        && valid_value(value)
}

/// Whether a value is in this library's encoding: not 0, nothing outside
/// the two halves, and each half's presence bit set exactly when it has
/// permissions.
pub fn valid_value(value: u32) -> bool {
    let half_ok = |s: u32| {
        let half = (value >> s) & HALF;
        (half & 7 != 0) == (half & PRESENT != 0)
    };
    value != 0
        && value & !SHIFTS.iter().fold(0, |m, s| m | HALF << s) == 0
        && SHIFTS.into_iter().all(half_ok)
}

/// The cgroup v1 rules one map entry stands for: its block rule, then its
/// char rule, each where that type has permissions. Never one `a` rule
/// for both: in v1 a line starting with `a` means every device, and a
/// char and a block rule are two lines there.
pub fn entry_rules(key: u64, value: u32) -> Vec<Rule> {
    let (major, minor) = split_key(key);
    [(DevType::Block, BLOCK_SHIFT), (DevType::Char, CHAR_SHIFT)]
        .into_iter()
        .map(|(ty, shift)| Rule {
            ty,
            major,
            minor,
            perms: vir_perms((value >> shift) & 7),
        })
        .filter(|r| r.perms != 0)
        .collect()
}

/// The keys whose rules cover every device `(major, minor)` stands for, in
/// the order the program looks them up (exact, major, minor, all).
pub fn covering_keys(major: Option<u32>, minor: Option<u32>) -> Vec<u64> {
    let mut keys = Vec::with_capacity(4);
    for (ma, mi) in [(major, minor), (major, None), (None, minor), (None, None)] {
        let key = key_of(ma, mi);
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys
}

/// Whether the rules `value_of` finds under the keys covering `rule` grant
/// it: [`allows`] on the values of [`covering_keys`].
pub fn grants(rule: &Rule, value_of: impl Fn(u64) -> Option<u32>) -> bool {
    let values: Vec<u32> = covering_keys(rule.major, rule.minor)
        .into_iter()
        .filter_map(value_of)
        .collect();
    allows(rule, &values)
}

/// Whether the values found under [`covering_keys`] grant `rule`, as the
/// program decides: one entry must hold a rule of the type with every
/// requested bit (for `a`, for both types).
pub fn allows(rule: &Rule, values: &[u32]) -> bool {
    let acc = acc_bits(rule.perms) | PRESENT;
    rule.ty.shifts().iter().all(|s| {
        let need = acc << s;
        values.iter().any(|v| v & need == need)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libvirt_key_and_perms() {
        assert_eq!(get_key(1, 3), 0x0000_0001_0000_0003);
        assert_eq!(get_perms(RW, b'c'), 0x0006_0002);
        assert_eq!(get_key(136, -1), 0x0000_0088_ffff_ffff);
        assert_eq!(get_key(-1, -1), u64::MAX);
        assert_eq!(get_perms(RWM, b'b'), 0x0007_0001);
        assert_eq!(get_perms(MKNOD, b'a'), 0x0001_0003);
        assert_eq!(get_perms(READ, b'x'), 0x0002_0003);
    }

    #[test]
    fn rule_validation_names_the_bad_argument() {
        let err = |t, ma, mi, p| Rule::new(t, ma, mi, p).unwrap_err().to_string();
        assert!(err(b'x', 1, 3, RW).contains("device type 'x'"));
        assert!(err(b'c', 4096, 3, RW).contains("major number 4096"));
        assert!(err(b'c', -2, 3, RW).contains("major number -2"));
        assert!(err(b'c', 1, 1_048_576, RW).contains("minor number 1048576"));
        assert!(err(b'c', 1, 3, 0).contains("permissions 0"));
        assert!(err(b'c', 1, 3, 8).contains("permissions 8"));
        assert!(Rule::new(b'b', 4095, 1_048_575, RWM).is_ok());
        assert_eq!(Rule::new(0, 1, 1, 1).unwrap_err().errno(), libc::EINVAL);
    }

    #[test]
    fn values_keep_char_and_block_apart() {
        let c = Rule::new(b'c', 1, 3, RW).unwrap();
        let b = Rule::new(b'b', 1, 3, READ).unwrap();
        assert_eq!(c.key(), b.key());
        let v = c.value() | b.value();
        assert_eq!(v, (0xe << CHAR_SHIFT) | 0xa);
        assert!(valid_entry(c.key(), v));
        assert_eq!(
            Rule::new(b'b', 1, 3, READ).unwrap().remove_from(v),
            c.value()
        );
        assert_eq!(Rule::new(b'a', 1, 3, RWM).unwrap().remove_from(v), 0);
        assert_eq!(
            Rule::new(b'c', 1, 3, WRITE).unwrap().remove_from(c.value()),
            Rule::new(b'c', 1, 3, READ).unwrap().value()
        );
        assert!(allows(&Rule::new(b'c', 1, 3, RW).unwrap(), &[v]));
        assert!(!allows(&Rule::new(b'b', 1, 3, RW).unwrap(), &[v]));
        assert_eq!(list_text(&[(c.key(), v)]), "b 1:3 r\nc 1:3 rw\n");
        // Never merged into an `a` line: v1 reads that as every device.
        let a = Rule::new(b'a', -1, -1, RWM).unwrap();
        assert_eq!(list_text(&[(a.key(), a.value())]), "b *:* rwm\nc *:* rwm\n");
        let a = Rule::new(b'a', 8, -1, MKNOD).unwrap();
        assert_eq!(list_text(&[(a.key(), a.value())]), "b 8:* m\nc 8:* m\n");
        assert_eq!(list_text(&[]), "");
    }

    #[test]
    fn libvirt_values_convert() {
        assert_eq!(
            from_libvirt_value(get_perms(RW, b'c')),
            Some(0xe << CHAR_SHIFT)
        );
        assert_eq!(from_libvirt_value(get_perms(READ, b'b')), Some(0xa));
        assert_eq!(from_libvirt_value(get_perms(MKNOD, b'a')), Some(0x909));
        assert_eq!(from_libvirt_value(0), None);
        assert_eq!(from_libvirt_value(0x0006_0000), None);
        assert_eq!(from_libvirt_value(0x0008_0002), None);
    }

    #[test]
    fn entries_in_other_encodings_are_refused() {
        let key = get_key(1, 3);
        assert!(!valid_entry(key, 0));
        assert!(!valid_entry(key, 6)); // permissions without presence
        assert!(!valid_entry(key, 8)); // presence without permissions
        assert!(!valid_entry(key, get_perms(RW, b'c'))); // libvirt's value
        assert!(!valid_entry(get_key(4096, 0), 0xa));
        assert!(valid_entry(get_key(-1, -1), 0xf0f));
    }

    #[test]
    fn list_is_sorted_with_wildcards_last() {
        let e = |t, ma, mi, p| {
            let r = Rule::new(t, ma, mi, p).unwrap();
            (r.key(), r.value())
        };
        let text = list_text(&[
            e(b'c', 136, -1, RW),
            e(b'c', 10, 232, RW),
            e(b'c', 1, 3, RW),
            e(b'b', 8, 0, READ),
            e(b'c', 0, 0, MKNOD),
        ]);
        assert_eq!(
            text,
            "b 8:0 r\nc 0:0 m\nc 1:3 rw\nc 10:232 rw\nc 136:* rw\n"
        );
    }

    #[test]
    fn covering_keys_for_wildcard_queries() {
        assert_eq!(covering_keys(Some(1), Some(3)).len(), 4);
        assert_eq!(
            covering_keys(Some(1), None),
            vec![key_of(Some(1), None), u64::MAX]
        );
        assert_eq!(covering_keys(None, None), vec![u64::MAX]);
    }
}
