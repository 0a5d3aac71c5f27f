// SPDX-License-Identifier: LGPL-2.1-or-later
//! A property of the rule text parser (cgroup v1's `devices.allow` text,
//! what the admin tool reads): for any byte string it either accepts it,
//! and then prints it back as text that parses to the same rule, or
//! rejects it with an `EINVAL` message of one line that quotes it. It never
//! panics. Seeded random inputs, tens of thousands per run: arbitrary
//! bytes, and valid rules mutated a little (near-valid text is where a
//! parser's edge cases are). An independent reading of the grammar
//! decides which inputs must be accepted.
//!
//! `VCG2_RULE_SEED=N` reruns one seed; `VCG2_RULE_CASES=N` sets how many
//! inputs of each kind.

use std::panic::{catch_unwind, AssertUnwindSafe};
use vircgroup_v2_devices::rules::{Rule, MAX_MAJOR, MAX_MINOR};

/// xorshift64*: small, seedable, good enough to spread inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Bytes a rule is made of, and the ones around its edges.
const ALPHABET: &[u8] = b"abcmrwx0123456789*:  \t\n\r\x0b\x0c+-/.AC";

fn number(rng: &mut Rng, max: u32) -> String {
    match rng.below(8) {
        0 => "*".into(),
        1 => max.to_string(),
        2 => (max + 1).to_string(),
        3 => "0".into(),
        4 => format!("0{}", rng.below(10)),
        5 => u64::from(u32::MAX)
            .wrapping_add(rng.below(3) as u64)
            .to_string(),
        _ => (rng.next() % (u64::from(max) + 1)).to_string(),
    }
}

/// A rule as an admin might type it, valid more often than not.
fn valid_ish(rng: &mut Rng) -> String {
    if rng.below(10) == 0 {
        return "a".into();
    }
    let ty = *rng.pick(&['a', 'b', 'c', 'c', 'b']);
    let (major, minor) = if ty == 'a' {
        ("*".to_string(), "*".to_string())
    } else {
        (number(rng, MAX_MAJOR), number(rng, MAX_MINOR))
    };
    let mut perms: Vec<char> = "rwm".chars().filter(|_| rng.below(2) == 0).collect();
    if perms.is_empty() {
        perms.push('r');
    }
    for i in (1..perms.len()).rev() {
        perms.swap(i, rng.below(i + 1));
    }
    let space = |rng: &mut Rng| *rng.pick(&[" ", " ", "  ", "\t", " \n "]);
    format!(
        "{}{ty}{}{major}:{minor}{}{}{}",
        if rng.below(8) == 0 { " " } else { "" },
        space(rng),
        space(rng),
        perms.iter().collect::<String>(),
        if rng.below(8) == 0 { "\n" } else { "" },
    )
}

/// `text` with one to three small edits.
fn mutate(rng: &mut Rng, text: String) -> Vec<u8> {
    let mut b = text.into_bytes();
    for _ in 0..1 + rng.below(3) {
        let at = rng.below(b.len() + 1);
        let byte = if rng.below(4) == 0 {
            rng.next() as u8
        } else {
            *rng.pick(ALPHABET)
        };
        match rng.below(6) {
            0 => b.insert(at, byte),
            1 if at < b.len() => {
                b.remove(at);
            }
            2 if at < b.len() => b[at] = byte,
            3 if at + 1 < b.len() => b.swap(at, at + 1),
            4 => {
                let end = (at + 1 + rng.below(4)).min(b.len());
                let piece = b[at.min(end)..end].to_vec();
                b.splice(at..at, piece);
            }
            _ => b.truncate(at),
        }
    }
    b
}

fn arbitrary(rng: &mut Rng) -> Vec<u8> {
    (0..rng.below(24))
        .map(|_| {
            if rng.below(3) == 0 {
                rng.next() as u8
            } else {
                *rng.pick(ALPHABET)
            }
        })
        .collect()
}

/// The grammar, read independently of the parser: whether `text` is a
/// rule it must accept.
fn grammar_accepts(text: &str) -> bool {
    let fields: Vec<&str> = text.split_ascii_whitespace().collect();
    let number = |n: &str, max: u32| {
        n == "*"
            || (!n.is_empty()
                && n.len() <= 7
                && n.bytes().all(|b| b.is_ascii_digit())
                && (n == "0" || !n.starts_with('0'))
                && n.parse::<u32>().is_ok_and(|v| v <= max))
    };
    let perms = |p: &str| {
        !p.is_empty()
            && p.chars().all(|c| "rwm".contains(c))
            && p.chars().all(|c| p.matches(c).count() == 1)
    };
    match fields[..] {
        ["a"] => true,
        ["a", "*:*", p] => perms(p),
        [t, nums, p] if t == "b" || t == "c" => nums
            .split_once(':')
            .is_some_and(|(ma, mi)| number(ma, MAX_MAJOR) && number(mi, MAX_MINOR) && perms(p)),
        _ => false,
    }
}

/// The property, for one input.
fn check(input: &[u8]) -> Result<bool, String> {
    let show = || format!("{:?}", String::from_utf8_lossy(input));
    // Only UTF-8 reaches the parser: the tool refuses other arguments
    // (tests/cli.rs); the lossy reading still goes through it.
    let text = String::from_utf8_lossy(input).into_owned();
    let parsed = catch_unwind(AssertUnwindSafe(|| text.parse::<Rule>()))
        .map_err(|_| format!("the parser panicked on {}", show()))?;
    let must = grammar_accepts(&text);
    match parsed {
        Ok(rule) => {
            if !must {
                return Err(format!("accepted {}, which the grammar refuses", show()));
            }
            let printed = rule.to_string();
            let again: Rule = printed
                .parse()
                .map_err(|e| format!("{} printed as {printed:?}, refused: {e}", show()))?;
            if again != rule || again.to_string() != printed {
                return Err(format!(
                    "{} is {rule:?}, printed {printed:?}, read back as {again:?}",
                    show()
                ));
            }
            Ok(true)
        }
        Err(e) => {
            let msg = e.to_string();
            if must {
                return Err(format!("refused {}, a rule: {msg}", show()));
            }
            if e.errno() != libc::EINVAL
                || !msg.starts_with("invalid rule '")
                || msg.chars().any(char::is_control)
            {
                return Err(format!(
                    "refused {} with errno {}, message {msg:?}: not EINVAL and one line naming it",
                    show(),
                    e.errno()
                ));
            }
            Ok(false)
        }
    }
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok()
}

#[test]
fn any_bytes_are_a_rule_that_prints_back_or_a_clear_error() {
    let seed = env_number("VCG2_RULE_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    }) | 1;
    let cases = env_number("VCG2_RULE_CASES").unwrap_or(20_000);
    eprintln!("seed {seed} (VCG2_RULE_SEED={seed} reruns it), {cases} inputs of each kind");
    let mut rng = Rng(seed);
    let (mut accepted, mut refused) = (0u64, 0u64);
    let fixed: &[&[u8]] = &[
        b"",
        b"a",
        b"a *:* rwm",
        b"c 1:3 rw",
        b"c 01:3 r",
        b"c 4096:0 r",
        b"b 8:1048576 r",
        b"c +1:3 r",
        b"c 1:3 rr",
        b"c \xff:3 r",
        b"c 1:3 r\x00",
        b"\xd8\x00",
        b"c 4294967296:1 r",
    ];
    let inputs = fixed
        .iter()
        .map(|b| b.to_vec())
        .chain((0..cases * 3).map(|i| match i % 3 {
            0 => arbitrary(&mut rng),
            1 => {
                let text = valid_ish(&mut rng);
                mutate(&mut rng, text)
            }
            _ => valid_ish(&mut rng).into_bytes(),
        }));
    for input in inputs {
        match check(&input) {
            Ok(true) => accepted += 1,
            Ok(false) => refused += 1,
            Err(why) => panic!("seed {seed}: {why}"),
        }
    }
    eprintln!("{accepted} accepted, {refused} refused");
    // The generators reach both sides.
    assert!(
        accepted > cases / 2 && refused > cases,
        "{accepted} / {refused}"
    );
}
