// SPDX-License-Identifier: LGPL-2.1-or-later
//! Device rules: validation, the map encoding, libvirt's encoding, and
//! cgroup v1 `devices.list` text.
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

use crate::{Error, Result};
use std::fmt::Write as _;

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

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let num = |n: Option<u32>| n.map_or("*".to_string(), |n| n.to_string());
        write!(
            f,
            "{} {}:{} {}",
            self.ty.letter(),
            num(self.major),
            num(self.minor),
            perms_text(self.perms)
        )
    }
}

/// Parses cgroup v1 rule text as the kernel's `devices.allow` and
/// `devices.deny` read it, without their leniencies:
/// - `TYPE MAJOR:MINOR PERMS` with TYPE `b` or `c` (`c 1:3 rw`, `b 8:* r`,
///   `c *:* m`): numbers in decimal without a leading zero, or `*`;
///   PERMS each of `r`, `w` and `m` at most once;
/// - `a`, or `a *:* PERMS`: every device (a rule of type `a` with both
///   numbers `*`). v1 reads every line starting with `a` as every device,
///   whatever follows, so `a` with numbers (`a 1:3 r`) is refused: the
///   error says to write `c 1:3 r` and `b 1:3 r` for both types, or `a`
///   for every device.
///
/// Any ASCII whitespace separates the fields. An error is `EINVAL`, quotes
/// the text (control characters escaped, see [`quoted`]) and names the bad
/// field.
impl std::str::FromStr for Rule {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let bad = |why: String| Error::invalid(format!("invalid rule {}: {why}", quoted(text)));
        let fields: Vec<&str> = text.split_ascii_whitespace().collect();
        let (ty, numbers, perms) = match fields[..] {
            ["a"] => return Rule::new(b'a', -1, -1, RWM),
            [ty, numbers, perms] => (ty, numbers, perms),
            _ => {
                return Err(bad(
                    "expected 'TYPE MAJOR:MINOR PERMS' (e.g. 'c 1:3 rw') or 'a'".into(),
                ))
            }
        };
        let ty = match ty {
            "a" | "b" | "c" => DevType::from_char(ty.as_bytes()[0])?,
            _ => {
                return Err(bad(format!(
                    "device type {} (expected b, c, or a for every device)",
                    quoted(ty)
                )))
            }
        };
        let (major, minor) = numbers
            .split_once(':')
            .ok_or_else(|| bad(format!("{} is not MAJOR:MINOR", quoted(numbers))))?;
        let number = |what: &str, n: &str, max: u32| {
            if n == "*" {
                return Ok(None);
            }
            let value = n
                .parse::<u32>()
                .ok()
                .filter(|&v| v <= max && n.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| {
                    bad(format!(
                        "{what} number {} (expected 0-{max} or *)",
                        quoted(n)
                    ))
                })?;
            if n.len() > 1 && n.starts_with('0') {
                return Err(bad(format!(
                    "{what} number {} has a leading zero (write '{value}')",
                    quoted(n)
                )));
            }
            Ok(Some(value))
        };
        let rule = Rule {
            ty,
            major: number("major", major, MAX_MAJOR)?,
            minor: number("minor", minor, MAX_MINOR)?,
            perms: parse_perms(perms)
                .map_err(|e| e.context(format_args!("invalid rule {}", quoted(text))))?,
        };
        if ty == DevType::All && !rule.every_device() {
            let of = |ty| Rule { ty, ..rule }.to_string();
            return Err(bad(format!(
                "in cgroup v1 a rule of type 'a' means every device, whatever numbers \
                 follow; for both types on {numbers} write '{}' and '{}', \
                 for every device 'a'",
                of(DevType::Char),
                of(DevType::Block)
            )));
        }
        Ok(rule)
    }
}

/// `text` between single quotes, safe to print on one line of a terminal:
/// control characters (and the invisible ones that reorder text) are
/// escaped as `\n`, `\t`, `\r`, `\xNN` or `\u{NNNN}`, and a backslash is
/// doubled, so that what is shown can be told apart from what was typed.
pub fn quoted(text: &str) -> String {
    format!("'{}'", escape(text, true))
}

/// `text` with its control characters escaped as [`quoted`] does, and its
/// backslashes left alone: for a message that may hold quoted text already.
pub fn printable(text: &str) -> String {
    escape(text, false)
}

/// `bytes` as [`printable`] text: bytes that are not UTF-8 (a cgroup's
/// name may hold any) are shown as `\xNN`.
pub fn printable_bytes(bytes: &[u8]) -> String {
    escape_bytes(bytes, false)
}

/// `bytes` between single quotes as [`quoted`] shows text, and bytes
/// that are not UTF-8 as `\xNN`.
pub fn quoted_bytes(bytes: &[u8]) -> String {
    format!("'{}'", escape_bytes(bytes, true))
}

/// `path` as [`printable_bytes`] shows it.
pub fn printable_path(path: &std::path::Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    printable_bytes(path.as_os_str().as_bytes())
}

/// `path` as [`quoted_bytes`] shows it.
pub fn quoted_path(path: &std::path::Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    quoted_bytes(path.as_os_str().as_bytes())
}

fn escape_bytes(bytes: &[u8], backslash: bool) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(&escape(chunk.valid(), backslash));
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// Whether [`printable`] shows `c` as itself (not escaped).
pub fn shown_as_is(c: char) -> bool {
    !matches!(
        c,
        '\0'..='\x1f'
        | '\x7f'
        | '\u{80}'..='\u{9f}'
        | '\u{200b}'..='\u{200f}'
        | '\u{2028}'..='\u{202e}'
        | '\u{2066}'..='\u{2069}'
        | '\u{feff}'
    )
}

fn escape(text: &str, backslash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' if backslash => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\0'..='\x1f' | '\x7f' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            '\u{80}'..='\u{9f}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
            | '\u{feff}' => {
                let _ = write!(out, "\\u{{{:04x}}}", c as u32);
            }
            _ => out.push(c),
        }
    }
    out
}

/// `VIR_CGROUP_DEVICE_*` bits of `rwm` text: a non-empty string of `r`,
/// `w` and `m`, each at most once, in any order. An error is `EINVAL` and
/// names the bad letter.
pub fn parse_perms(text: &str) -> Result<i32> {
    let mut perms = 0;
    for c in text.chars() {
        let bit = match c {
            'r' => READ,
            'w' => WRITE,
            'm' => MKNOD,
            _ => {
                return Err(Error::invalid(format!(
                    "permission {} (expected r, w or m)",
                    quoted(c.encode_utf8(&mut [0; 4]))
                )))
            }
        };
        if perms & bit != 0 {
            return Err(Error::invalid(format!(
                "permission '{c}' given twice in {} (write each of r, w, m at most once)",
                quoted(text)
            )));
        }
        perms |= bit;
    }
    if perms == 0 {
        return Err(Error::invalid("no permission (expected r, w or m)"));
    }
    Ok(perms)
}

/// `rwm` text of `VIR_CGROUP_DEVICE_*` bits.
pub fn perms_text(perms: i32) -> String {
    [(READ, 'r'), (WRITE, 'w'), (MKNOD, 'm')]
        .iter()
        .filter(|(bit, _)| perms & bit != 0)
        .map(|(_, c)| c)
        .collect()
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

/// `VIR_CGROUP_DEVICE_*` bits -> `BPF_DEVCG_ACC_*` bits.
pub fn acc_bits(perms: i32) -> u32 {
    let mut acc = 0;
    if perms & READ != 0 {
        acc |= ACC_READ;
    }
    if perms & WRITE != 0 {
        acc |= ACC_WRITE;
    }
    if perms & MKNOD != 0 {
        acc |= ACC_MKNOD;
    }
    acc
}

/// `BPF_DEVCG_ACC_*` bits -> `VIR_CGROUP_DEVICE_*` bits.
pub fn vir_perms(acc: u32) -> i32 {
    let mut perms = 0;
    if acc & ACC_READ != 0 {
        perms |= READ;
    }
    if acc & ACC_WRITE != 0 {
        perms |= WRITE;
    }
    if acc & ACC_MKNOD != 0 {
        perms |= MKNOD;
    }
    perms
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

/// What cgroup v1's `devices.list` shows for a cgroup that no device
/// program restricts (v1's default-allow cgroup): the only `a` line a list
/// ever has.
pub const UNRESTRICTED_LIST: &str = "a *:* rwm\n";

/// `devices.list` text of map entries: exactly the lines cgroup v1's
/// `devices.list` shows for the same rules (in v1's order of insertion
/// there; here sorted by type, `b` then `c`, then major, then minor, `*`
/// after every number). No rule: the empty string.
pub fn list_text(entries: &[(u64, u32)]) -> String {
    let mut rules: Vec<Rule> = entries
        .iter()
        .flat_map(|&(k, v)| entry_rules(k, v))
        .collect();
    rules.sort_by_key(|r| {
        (
            r.ty,
            r.major.unwrap_or(WILDCARD),
            r.minor.unwrap_or(WILDCARD),
        )
    });
    rules.iter().fold(String::new(), |mut s, r| {
        let _ = writeln!(s, "{r}");
        s
    })
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

#[cfg(test)]
mod text_tests {
    use super::*;

    #[test]
    fn v1_text_parses_and_round_trips() {
        for text in [
            "c 1:3 rw",
            "b 8:* r",
            "c *:* m",
            "b 0:0 rwm",
            "c 10:0 w",
            "b 4095:1048575 w",
            "a *:* rwm",
            "a *:* r",
        ] {
            let rule: Rule = text.parse().unwrap();
            assert_eq!(rule.to_string(), text);
        }
        let all: Rule = "a".parse().unwrap();
        assert_eq!(all.to_string(), "a *:* rwm");
        assert!(all.every_device());
        assert!(!"c *:* rwm".parse::<Rule>().unwrap().every_device());
        assert_eq!(
            " c\t136:*  wr ".parse::<Rule>().unwrap(),
            Rule::new(b'c', 136, -1, RW).unwrap()
        );
        assert_eq!("c 1:3 r\n".parse::<Rule>().unwrap().to_string(), "c 1:3 r");
    }

    #[test]
    fn bad_v1_text_names_the_field() {
        let err = |t: &str| {
            let e = t.parse::<Rule>().unwrap_err();
            assert_eq!(e.errno(), libc::EINVAL);
            e.to_string()
        };
        assert_eq!(
            err("c 1:3 rwx"),
            "invalid rule 'c 1:3 rwx': permission 'x' (expected r, w or m)"
        );
        assert_eq!(
            err("q 1:3 r"),
            "invalid rule 'q 1:3 r': device type 'q' (expected b, c, or a for every device)"
        );
        assert_eq!(
            err("c 5000:1 r"),
            "invalid rule 'c 5000:1 r': major number '5000' (expected 0-4095 or *)"
        );
        assert!(err("c 1:1048576 r").contains("minor number '1048576'"));
        assert!(err("c -1:3 r").contains("major number '-1'"));
        assert!(err("c +1:3 r").contains("major number '+1'"));
        assert!(err("c 1-3 r").contains("'1-3' is not MAJOR:MINOR"));
        assert_eq!(parse_perms("mr").unwrap(), READ | MKNOD);
        assert!(parse_perms("")
            .unwrap_err()
            .to_string()
            .contains("no permission"));
        for text in ["", "c", "c 1:3", "c 1:3 r w", "a *:*", "cc 1:3 r", "a 1:3"] {
            assert!(err(text).starts_with("invalid rule"), "{text:?}");
        }
    }

    #[test]
    fn v1_leniencies_are_errors() {
        let err = |t: &str| t.parse::<Rule>().unwrap_err().to_string();
        // v1 reads any line starting with 'a' as every device.
        assert_eq!(
            err("a 1:3 r"),
            "invalid rule 'a 1:3 r': in cgroup v1 a rule of type 'a' means every device, \
             whatever numbers follow; for both types on 1:3 write 'c 1:3 r' and 'b 1:3 r', \
             for every device 'a'"
        );
        assert!(err("a 8:* m").contains("write 'c 8:* m' and 'b 8:* m'"));
        assert!(err("a *:3 rw").contains("write 'c *:3 rw' and 'b *:3 rw'"));
        // The kernel reads 01 as 1 and 'rrw' as 'rw'.
        assert_eq!(
            err("c 01:3 r"),
            "invalid rule 'c 01:3 r': major number '01' has a leading zero (write '1')"
        );
        assert!(err("c 1:003 r").contains("minor number '003' has a leading zero (write '3')"));
        assert_eq!(
            err("c 1:3 rrw"),
            "invalid rule 'c 1:3 rrw': permission 'r' given twice in 'rrw' \
             (write each of r, w, m at most once)"
        );
        assert!(err("b 1:3 rwmr").contains("permission 'r' given twice"));
        // Fields are split on ASCII whitespace only.
        assert!(err("c\u{a0}1:3 r").contains("expected 'TYPE MAJOR:MINOR PERMS'"));
    }

    #[test]
    fn control_characters_are_quoted_safely() {
        let err = |t: &str| t.parse::<Rule>().unwrap_err().to_string();
        assert_eq!(
            err("c 1:3 r\x1b[2J"),
            "invalid rule 'c 1:3 r\\x1b[2J': permission '\\x1b' (expected r, w or m)"
        );
        assert_eq!(
            err("c\r 1:3"),
            "invalid rule 'c\\r 1:3': expected 'TYPE MAJOR:MINOR PERMS' (e.g. 'c 1:3 rw') or 'a'"
        );
        assert!(err("\u{202e}c 1:3 r").contains("device type '\\u{202e}c'"));
        assert!(err("c 1\x07:3 r").contains("major number '1\\x07'"));
        assert_eq!(quoted("a\\b\n\u{85}é"), "'a\\\\b\\n\\u{0085}é'");
        assert_eq!(printable("'a\\x1b' \x1b"), "'a\\x1b' \\x1b");
        for text in ["c 1:3 r\x1b", "\x00", "q\x7f 1:3 r", "c 1:3 \u{9b}"] {
            assert!(!err(text).chars().any(char::is_control), "{:?}", err(text));
        }
    }
}
