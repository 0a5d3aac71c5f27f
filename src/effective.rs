// SPDX-License-Identifier: LGPL-2.1-or-later
//! What the kernel enforces for a process in a cgroup: `check`, `list` and
//! `explain`, across every device program that applies there.
//!
//! **The chain.** The kernel keeps, per cgroup, the array of device
//! programs it runs for a process in it: its own, then its ancestors' that
//! apply (an ancestor's program applies when nothing below it has one, or
//! when it was attached with `BPF_F_ALLOW_MULTI`; with
//! `BPF_F_ALLOW_OVERRIDE` a descendant's program replaces it). It runs
//! every one of them, and the access is allowed only when each returns 1.
//! That array is read as it is (`BPF_PROG_QUERY` with
//! `BPF_F_QUERY_EFFECTIVE`), not worked out again from attach flags; each
//! program is then attributed to the nearest cgroup on the way up that has
//! it attached (a plain query per ancestor, up to the root of the cgroup2
//! mount), and shown from the root down.
//!
//! **A program's verdict.** This library's programs (every format) and
//! libvirt's are read through their maps, as `check` always did; any other
//! program (systemd's, runc's, crun's) is run by the interpreter
//! (`interpret`) on its instructions as the kernel reports them. What
//! cannot be evaluated exactly (a helper call, a map's memory, the kernel
//! withholding the instructions) fails with `EOPNOTSUPP` naming the program
//! and what, never a guess. `check` and `explain` are one computation.
//!
//! **The list.** The rules in force are the intersection of every
//! program's rules: folded from the root down, each rule of a program kept
//! whole where a rule above covers it, else cut to the parts the rules
//! above allow. A program whose rules cannot be read (someone else's)
//! makes `list` fail with `EOPNOTSUPP` naming it.
//!
//! Everything here only reads: no program is attached, replaced or
//! detached, no map written.
#![forbid(unsafe_code)]

use crate::cgroup::Cgroup;
use crate::held::{Held, Maps};
use crate::insn::Insn;
use crate::interpret;
use crate::program;
use crate::recognise::{recognise, Found};
use crate::registry::with_cgroup;
use crate::rules::{self, DevType, Rule};
use crate::sys::{self, BPF_CGROUP_DEVICE};
use crate::{Error, Result};
use std::fmt::Write as _;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

/// Who a program belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// This library, in that format (1-6).
    Ours(u32),
    /// libvirt's own C code.
    Libvirt,
    /// Anyone else: the program's name as the kernel reports it.
    Other(String),
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Owner::Ours(n) => write!(f, "vircgroup-v2-devices/{n}"),
            Owner::Libvirt => write!(f, "libvirt"),
            Owner::Other(name) => write!(f, "other:{name}"),
        }
    }
}

/// One program's verdict on an access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The cgroup it is attached to.
    pub cgroup: PathBuf,
    /// Its id.
    pub id: u32,
    /// Whose it is.
    pub owner: Owner,
    /// Whether it allows the access.
    pub allowed: bool,
    /// The cgroup v1 line that granted the access (two, comma-separated,
    /// for a rule of type `a`), where the owner's rules are known.
    pub rule: Option<String>,
}

/// Why an access is allowed or denied for a process in a cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// Every program the kernel runs there, from the root down.
    pub programs: Vec<Verdict>,
    /// The answer: every program allows it.
    pub allowed: bool,
}

impl Explanation {
    /// The text `explain` returns: one line per program,
    /// `cgroup=PATH prog=ID owner=OWNER verdict=allow|deny[ rule="LINE"]`,
    /// then `result=allowed` or `result=denied`.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for v in &self.programs {
            let _ = write!(
                s,
                "cgroup={} prog={} owner={} verdict={}",
                rules::printable_path(&v.cgroup),
                v.id,
                v.owner,
                if v.allowed { "allow" } else { "deny" }
            );
            if let Some(r) = &v.rule {
                let _ = write!(s, " rule=\"{r}\"");
            }
            s.push('\n');
        }
        let _ = writeln!(
            s,
            "result={}",
            if self.allowed { "allowed" } else { "denied" }
        );
        s
    }
}

/// A program on the chain and where it is attached.
#[derive(Debug, Clone)]
struct Link {
    cgroup: PathBuf,
    id: u32,
}

/// How a program's decisions are read.
enum View<'a> {
    /// Through its rules (this library's, libvirt's): whether it grants
    /// a rule, a lookup by key (for the rule that granted), and every
    /// entry it enforces.
    Rules {
        owner: Owner,
        allows: &'a dyn Fn(&Rule) -> bool,
        value_of: &'a dyn Fn(u64) -> Option<u32>,
        entries: &'a dyn Fn() -> Vec<(u64, u32)>,
    },
    /// Someone else's: its name and translated instructions (None when
    /// the kernel withholds them).
    Program {
        name: String,
        insns: Option<Vec<Insn>>,
    },
}

/// A change seen while reading (a program detached or replaced between
/// two queries): the whole read starts again.
struct Raced;

type Attempt<T> = std::result::Result<T, Raced>;

const ATTEMPTS: usize = 8;

/// Runs `read` until it sees no change, at most [`ATTEMPTS`] times.
fn settled<T>(path: &Path, mut read: impl FnMut() -> Result<Attempt<T>>) -> Result<T> {
    for _ in 0..ATTEMPTS {
        if let Ok(v) = read()? {
            return Ok(v);
        }
    }
    Err(Error::new(
        libc::EAGAIN,
        format!(
            "the device programs for '{}' kept changing while they were read \
             ({ATTEMPTS} attempts)",
            rules::printable_path(path)
        ),
    ))
}

/// The programs the kernel runs for a process in `cg`, from the root down.
fn chain(cg: &Cgroup) -> Result<Attempt<Vec<Link>>> {
    let what = |e: Error| {
        e.context(format_args!(
            "cgroup '{}'",
            rules::printable_path(cg.path())
        ))
    };
    let ids = sys::prog_query_effective(cg.as_fd(), BPF_CGROUP_DEVICE).map_err(what)?;
    if ids.is_empty() {
        return Ok(Ok(Vec::new()));
    }
    // (depth from the cgroup up, position in the kernel's order, link)
    let mut found: Vec<(usize, usize, Link)> = Vec::new();
    let mut level = 0;
    let mut here: Option<Cgroup> = None;
    let mut top;
    loop {
        let c = here.as_ref().unwrap_or(cg);
        let own = c.attached()?.ids;
        for (pos, id) in ids.iter().enumerate() {
            if own.contains(id) && !found.iter().any(|f| f.2.id == *id) {
                found.push((
                    level,
                    pos,
                    Link {
                        cgroup: c.path().to_path_buf(),
                        id: *id,
                    },
                ));
            }
        }
        top = c.path().to_path_buf();
        if found.len() == ids.len() || c.is_root() {
            break;
        }
        let Some(parent) = c.path().parent() else {
            break;
        };
        match Cgroup::open(parent) {
            Ok(p) if p.id().0 == c.id().0 => here = Some(p),
            // Not on the same cgroup2 filesystem: the mount's root.
            _ => break,
        }
        level += 1;
    }
    // A program attached above what this mount shows (a cgroup
    // namespace's root) is shown at the top cgroup it shows.
    for (pos, id) in ids.iter().enumerate() {
        if !found.iter().any(|f| f.2.id == *id) {
            found.push((
                level + 1,
                pos,
                Link {
                    cgroup: top.clone(),
                    id: *id,
                },
            ));
        }
    }
    found.sort_by_key(|f| (std::cmp::Reverse(f.0), f.1));
    // (The callers query the kernel's list again once every program was
    // read: a change in between starts the read over.)
    Ok(Ok(found.into_iter().map(|f| f.2).collect()))
}

/// Whether the kernel still runs exactly the programs of `links` for `cg`
/// (none attached or detached since they were read).
fn unchanged(cg: &Cgroup, links: &[Link]) -> Result<bool> {
    let mut now = sys::prog_query_effective(cg.as_fd(), BPF_CGROUP_DEVICE)
        .map_err(|e| e.context(format_args!("cgroup '{}'", cg.path().display())))?;
    let mut read: Vec<u32> = links.iter().map(|l| l.id).collect();
    now.sort_unstable();
    read.sort_unstable();
    Ok(now == read)
}

/// Runs `f` on how the program of `link` decides. This library's program
/// is held from then on, as the other read-only calls hold it (nothing
/// changes in the kernel).
/// `adopted` gets the cgroup when its program is held from this call on.
fn with_view<R>(
    link: &Link,
    adopted: &mut Vec<PathBuf>,
    f: &dyn Fn(View<'_>) -> Result<R>,
) -> Result<Attempt<R>> {
    with_cgroup(&link.cgroup, |cg, held| {
        let attached = cg.attached()?;
        if !attached.ids.contains(&link.id) {
            return Ok(Err(Raced));
        }
        if held
            .get()
            .is_some_and(|h| !attached.ids.contains(&h.prog_id))
        {
            held.clear();
        }
        if held.get().is_none_or(|h| h.prog_id != link.id) {
            // This program alone: a cgroup may hold several (ALLOW_MULTI).
            let this = sys::Attached {
                flags: attached.flags,
                ids: vec![link.id],
            };
            match recognise(cg, &this)?.0 {
                // Held from now on, unless another program of ours is.
                Some(Found::Ours(h)) if held.is_empty() => {
                    held.set(h);
                    adopted.push(link.cgroup.clone());
                }
                Some(Found::Ours(mut h)) => return ours(cg, &mut h, f).map(Ok),
                Some(Found::Convert(c)) => {
                    let owner = if c.libvirt() {
                        Owner::Libvirt
                    } else {
                        Owner::Ours(c.format)
                    };
                    let rules = c.rules;
                    let value_of = |k| rules.get(&k).copied();
                    return f(View::Rules {
                        owner,
                        allows: &|r| rules::grants(r, value_of),
                        value_of: &value_of,
                        entries: &|| rules.iter().map(|(&k, &v)| (k, v)).collect(),
                    })
                    .map(Ok);
                }
                None => {}
            }
        }
        if let Some(h) = held.get_mut().filter(|h| h.prog_id == link.id) {
            return ours(cg, h, f).map(Ok);
        }
        let prog = match sys::prog_get_fd_by_id(link.id) {
            Ok(p) => p,
            Err(e) if e.errno() == libc::ENOENT => return Ok(Err(Raced)),
            Err(e) => return Err(e),
        };
        let name = sys::prog_info(prog.as_fd())?.name;
        let insns = sys::prog_xlated(prog.as_fd())?;
        f(View::Program { name, insns }).map(Ok)
    })
}

/// Runs `f` on a program of this library, read through its maps.
fn ours<R>(cg: &Cgroup, h: &mut Held, f: &dyn Fn(View<'_>) -> Result<R>) -> Result<R> {
    match &mut h.maps {
        // What the program reads (the majors' words), which is what the
        // kernel enforces also after a writer died half-way.
        Maps::Table(t) => t.read(|t| {
            f(View::Rules {
                owner: Owner::Ours(program::table::FORMAT),
                allows: &|r| t.allows(r),
                value_of: &|k| t.get(k),
                entries: &|| t.enforced(),
            })
        })?,
        Maps::Hash(m) => {
            {
                let _lock = cg.lock()?;
                m.refresh()?;
            }
            let rules = m.rules();
            let value_of = |k| rules.get(&k).copied();
            f(View::Rules {
                owner: Owner::Ours(program::hash::FORMAT),
                allows: &|r| rules::grants(r, value_of),
                value_of: &value_of,
                entries: &|| rules.iter().map(|(&k, &v)| (k, v)).collect(),
            })
        }
    }
}

/// The error for a program whose answer cannot be established.
fn unsupported(link: &Link, name: &str, what: impl std::fmt::Display) -> Error {
    Error::new(
        libc::EOPNOTSUPP,
        format!(
            "device program {} '{}' on '{}' (not this library's nor libvirt's) cannot be \
             evaluated: {what}",
            link.id,
            rules::printable(name),
            rules::printable_path(&link.cgroup)
        ),
    )
}

/// The types a rule stands for, with their `BPF_DEVCG_DEV_*` value.
fn types_of(ty: DevType) -> &'static [(DevType, u32)] {
    match ty {
        DevType::All => &[
            (DevType::Block, rules::DEV_BLOCK),
            (DevType::Char, rules::DEV_CHAR),
        ],
        DevType::Block => &[(DevType::Block, rules::DEV_BLOCK)],
        DevType::Char => &[(DevType::Char, rules::DEV_CHAR)],
    }
}

/// One program's verdict on `rule` (every device it names, for a process
/// in the cgroup).
fn verdict(link: &Link, rule: &Rule, adopted: &mut Vec<PathBuf>) -> Result<Attempt<Verdict>> {
    with_view(link, adopted, &|view| {
        Ok(match view {
            View::Rules {
                owner,
                allows,
                value_of,
                entries: _,
            } => {
                let allowed = allows(rule);
                let rule = allowed
                    .then(|| granting(rule, value_of))
                    .filter(|g| !g.is_empty());
                Verdict {
                    cgroup: link.cgroup.clone(),
                    id: link.id,
                    owner,
                    allowed,
                    rule,
                }
            }
            View::Program { name, insns } => {
                let Some(insns) = insns else {
                    return Err(unsupported(
                        link,
                        &name,
                        "the kernel withholds its instructions \
                         (BPF_OBJ_GET_INFO_BY_FD gave no xlated_prog_insns)",
                    ));
                };
                let (Some(major), Some(minor)) = (rule.major, rule.minor) else {
                    return Err(unsupported(
                        link,
                        &name,
                        format_args!(
                            "it is run for one device at a time, and '{rule}' names many \
                             (give a major and a minor number)"
                        ),
                    ));
                };
                let acc = rules::acc_bits(rule.perms);
                let mut allowed = true;
                for &(ty, bits) in types_of(rule.ty) {
                    match interpret::run(&insns, (acc << 16) | bits, major, minor) {
                        Ok(0) => allowed = false,
                        Ok(1) => {}
                        Ok(r0) => {
                            return Err(unsupported(
                                link,
                                &name,
                                format_args!("it returned {r0} for {}", Rule { ty, ..*rule }),
                            ))
                        }
                        Err(what) => return Err(unsupported(link, &name, what)),
                    }
                }
                Verdict {
                    cgroup: link.cgroup.clone(),
                    id: link.id,
                    owner: Owner::Other(name),
                    allowed,
                    rule: None,
                }
            }
        })
    })
}

/// The v1 line (one per type) of the entry that grants `rule`, the first
/// in the order the program looks them up.
fn granting(rule: &Rule, value_of: &dyn Fn(u64) -> Option<u32>) -> String {
    let acc = rules::acc_bits(rule.perms) | rules::PRESENT;
    let mut lines = Vec::new();
    for &(ty, _) in types_of(rule.ty) {
        let shift = if ty == DevType::Block {
            rules::BLOCK_SHIFT
        } else {
            rules::CHAR_SHIFT
        };
        let need = acc << shift;
        for key in rules::covering_keys(rule.major, rule.minor) {
            if let Some(v) = value_of(key).filter(|v| v & need == need) {
                if let Some(r) = rules::entry_rules(key, v).into_iter().find(|r| r.ty == ty) {
                    lines.push(r.to_string());
                }
                break;
            }
        }
    }
    lines.join(", ")
}

/// Why `rule` is allowed or denied for a process in the cgroup at `path`:
/// every program the kernel runs there, from the root down, with its
/// verdict. A cgroup no program restricts allows everything.
pub fn explain(path: impl AsRef<Path>, rule: &Rule) -> Result<Explanation> {
    let path = path.as_ref();
    let cg = Cgroup::open(path)?;
    let mut adopted = Vec::new();
    let result = settled(path, || {
        let links = match chain(&cg)? {
            Ok(l) => l,
            Err(r) => return Ok(Err(r)),
        };
        let mut programs = Vec::with_capacity(links.len());
        for link in &links {
            match verdict(link, rule, &mut adopted)? {
                Ok(v) => programs.push(v),
                Err(r) => return Ok(Err(r)),
            }
        }
        if !unchanged(&cg, &links)? {
            return Ok(Err(Raced));
        }
        let allowed = programs.iter().all(|v| v.allowed);
        Ok(Ok(Explanation { programs, allowed }))
    });
    failed_forgets(result, &adopted)
}

/// A call that fails leaves no state it did not start with: the programs
/// it held on the way are let go (the next call finds them again).
fn failed_forgets<T>(result: Result<T>, adopted: &[PathBuf]) -> Result<T> {
    if result.is_err() {
        for p in adopted {
            let _ = crate::registry::release(p);
        }
    }
    result
}

/// Whether a process in the cgroup at `path` may make `rule`'s access to
/// every device it names: every device program the kernel runs there
/// allows it (`explain`'s answer).
pub fn check(path: impl AsRef<Path>, rule: &Rule) -> Result<bool> {
    explain(path, rule).map(|e| e.allowed)
}

/// The rules in force for a process in the cgroup at `path`, as cgroup v1
/// `devices.list` text (sorted; `a *:* rwm` when no program restricts it).
pub fn list(path: impl AsRef<Path>) -> Result<String> {
    Ok(match rules_in_force(path)? {
        None => rules::UNRESTRICTED_LIST.to_string(),
        Some(r) => list_text(&r),
    })
}

/// The rules in force for a process in the cgroup at `path` (each of type
/// `b` or `c`); None when no device program restricts it.
pub fn rules_in_force(path: impl AsRef<Path>) -> Result<Option<Vec<Rule>>> {
    let path = path.as_ref();
    let cg = Cgroup::open(path)?;
    let mut adopted = Vec::new();
    let result = settled(path, || {
        let links = match chain(&cg)? {
            Ok(l) => l,
            Err(r) => return Ok(Err(r)),
        };
        let mut acc: Option<Vec<Rule>> = None;
        for link in &links {
            let read = with_view(link, &mut adopted, &|view| match view {
                View::Rules { entries, .. } => Ok(entries()
                    .into_iter()
                    .flat_map(|(k, v)| rules::entry_rules(k, v))
                    .collect::<Vec<Rule>>()),
                View::Program { name, .. } => Err(Error::new(
                    libc::EOPNOTSUPP,
                    format!(
                        "device program {} '{}' on '{}' is not this library's nor libvirt's: \
                         its rules cannot be read (check and explain still answer for a device)",
                        link.id,
                        rules::printable(&name),
                        rules::printable_path(&link.cgroup)
                    ),
                )),
            })?;
            let own = match read {
                Ok(r) => r,
                Err(r) => return Ok(Err(r)),
            };
            acc = Some(match acc {
                None => own,
                Some(above) => restrict(&own, &above),
            });
        }
        if !unchanged(&cg, &links)? {
            return Ok(Err(Raced));
        }
        Ok(Ok(acc))
    });
    failed_forgets(result, &adopted)
}

/// Whether rule `a` covers rule `b`: same type, numbers at least as wide,
/// every permission of `b`.
fn covers(a: &Rule, b: &Rule) -> bool {
    a.ty == b.ty
        && a.major.is_none_or(|m| b.major == Some(m))
        && a.minor.is_none_or(|m| b.minor == Some(m))
        && a.perms & b.perms == b.perms
}

/// The part of `a` that `b` also allows, if any.
fn meet(a: &Rule, b: &Rule) -> Option<Rule> {
    let num = |x: Option<u32>, y: Option<u32>| match (x, y) {
        (Some(x), Some(y)) if x != y => Err(()),
        (Some(x), _) | (_, Some(x)) => Ok(Some(x)),
        (None, None) => Ok(None),
    };
    let perms = a.perms & b.perms;
    (a.ty == b.ty && perms != 0).then_some(())?;
    Some(Rule {
        ty: a.ty,
        major: num(a.major, b.major).ok()?,
        minor: num(a.minor, b.minor).ok()?,
        perms,
    })
}

/// The rules of a program below the ones `above` (what the programs above
/// it allow): each kept whole where a rule above covers it, else cut to
/// its parts the rules above allow (a part inside another part dropped).
/// What the result allows is exactly what both allow.
fn restrict(own: &[Rule], above: &[Rule]) -> Vec<Rule> {
    let mut out: Vec<Rule> = Vec::new();
    for r in own {
        if above.iter().any(|a| covers(a, r)) {
            out.push(*r);
            continue;
        }
        let parts: Vec<Rule> = above.iter().filter_map(|a| meet(r, a)).collect();
        for (i, p) in parts.iter().enumerate() {
            let inside = parts
                .iter()
                .enumerate()
                .any(|(j, q)| j != i && covers(q, p) && (q != p || j < i));
            if !inside {
                out.push(*p);
            }
        }
    }
    out
}

/// `devices.list` lines of rules of type `b` or `c`, sorted as
/// `rules::list_text` sorts them, each line once.
fn list_text(r: &[Rule]) -> String {
    let mut r = r.to_vec();
    r.sort_by_key(|r| {
        (
            r.ty,
            r.major.unwrap_or(rules::WILDCARD),
            r.minor.unwrap_or(rules::WILDCARD),
            r.perms,
        )
    });
    r.dedup();
    r.iter().fold(String::new(), |mut s, r| {
        let _ = writeln!(s, "{r}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(text: &str) -> Rule {
        text.parse().unwrap()
    }

    fn rs(lines: &[&str]) -> Vec<Rule> {
        lines.iter().map(|l| r(l)).collect()
    }

    fn allows(set: &[Rule], ty: DevType, ma: u32, mi: u32, perms: i32) -> bool {
        set.iter().any(|x| {
            x.ty == ty
                && x.major.is_none_or(|m| m == ma)
                && x.minor.is_none_or(|m| m == mi)
                && x.perms & perms == perms
        })
    }

    #[test]
    fn a_rule_inside_the_rules_above_is_kept_whole() {
        let above = rs(&["c 1:* rw", "c *:3 w", "b 8:* rwm"]);
        let own = rs(&["c 1:3 r", "c 1:* rw", "b 8:0 m", "c 5:5 r"]);
        assert_eq!(
            list_text(&restrict(&own, &above)),
            "b 8:0 m\nc 1:3 r\nc 1:* rw\n"
        );
    }

    #[test]
    fn a_rule_wider_than_the_rules_above_is_cut() {
        let above = rs(&["c 1:* r", "c *:3 w"]);
        let own = rs(&["c 1:3 rw", "c *:* rwm"]);
        // No single rule above holds rw on 1:3: two lines, as the kernel
        // decides (rw denied, r and w each allowed).
        assert_eq!(
            list_text(&restrict(&own, &above)),
            "c 1:3 r\nc 1:3 w\nc 1:* r\nc *:3 w\n"
        );
    }

    /// The fold allows exactly what every set allows, on a grid.
    #[test]
    fn restrict_is_the_intersection() {
        let sets = [
            rs(&["c 1:* rw", "c *:3 w", "b *:* m", "c 2:2 rwm"]),
            rs(&["c 1:3 rwm", "c *:* r", "b 1:* rm", "c 2:* w"]),
            rs(&["c 1:3 rw", "c 2:2 rw", "b *:3 m", "c *:2 rw", "c 1:* m"]),
        ];
        let folded = restrict(&restrict(&sets[1], &sets[0]), &sets[2]);
        let folded2 = restrict(&sets[2], &restrict(&sets[1], &sets[0]));
        for ty in [DevType::Block, DevType::Char] {
            for ma in 0..4 {
                for mi in 0..4 {
                    for p in 1..=7 {
                        let want = sets.iter().all(|s| allows(s, ty, ma, mi, p));
                        assert_eq!(allows(&folded, ty, ma, mi, p), want);
                        assert_eq!(allows(&folded2, ty, ma, mi, p), want);
                    }
                }
            }
        }
    }

    #[test]
    fn explanation_text() {
        let e = Explanation {
            programs: vec![
                Verdict {
                    cgroup: "/sys/fs/cgroup/machine.slice".into(),
                    id: 7,
                    owner: Owner::Other("sd_devices".into()),
                    allowed: true,
                    rule: None,
                },
                Verdict {
                    cgroup: "/sys/fs/cgroup/machine.slice/vm/libvirt".into(),
                    id: 9,
                    owner: Owner::Ours(6),
                    allowed: true,
                    rule: Some("c 136:* rw".into()),
                },
            ],
            allowed: true,
        };
        assert_eq!(
            e.text(),
            "cgroup=/sys/fs/cgroup/machine.slice prog=7 owner=other:sd_devices verdict=allow\n\
             cgroup=/sys/fs/cgroup/machine.slice/vm/libvirt prog=9 owner=vircgroup-v2-devices/6 \
             verdict=allow rule=\"c 136:* rw\"\n\
             result=allowed\n"
        );
    }
}
