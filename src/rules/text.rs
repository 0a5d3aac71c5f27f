// SPDX-License-Identifier: LGPL-2.1-or-later
//! Device rules as cgroup v1 text: a rule parsed from and printed as a line
//! of `devices.allow` / `devices.list`, permissions as `rwm`, the
//! `devices.list` text of map entries, and text (and paths, which may not
//! be UTF-8) quoted safely for a terminal.
#![forbid(unsafe_code)]

use super::*;
use crate::{Error, Result};
use std::fmt::Write as _;

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
        let rule = Rule {
            ty,
            major: number_text(text, "major", major, MAX_MAJOR)?,
            minor: number_text(text, "minor", minor, MAX_MINOR)?,
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

/// A `MAJOR` or `MINOR` field `n` of the rule `text`: decimal without a
/// leading zero, at most `max`, or `*` (None).
fn number_text(text: &str, what: &str, n: &str, max: u32) -> Result<Option<u32>> {
    let bad = |why: String| Error::invalid(format!("invalid rule {}: {why}", quoted(text)));
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

#[cfg(test)]
mod tests {
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
