// SPDX-License-Identifier: LGPL-2.1-or-later
//! The calls that change a cgroup's policy: detect / create / prepare /
//! attach / allow / deny / deny-all / remove / detach. Safe code only.
//!
//! Every change runs on the program held for the cgroup, locked against
//! every other writer of this library (the table's lock, or the cgroup's
//! for format 5) and checked, once locked, to be still the one attached:
//! the kernel is the truth, so a change never builds on what another
//! process replaced. When nothing is held (the first call, a daemon
//! restart, another process's replacement), the cgroup's lock is taken and
//! what is attached is recognised: a current program of this library's is
//! adopted as it is; an earlier release's or libvirt's is replaced, in one
//! step, by the current program holding its rules (converted) and the
//! change.
//!
//! A failed call changes nothing: a call changes the kernel in at most one
//! step, its last (one slot or map element, or the attach of a new
//! program), or only ever widens what the program looks at.
#![forbid(unsafe_code)]

use crate::cgroup::{self, Cgroup};
use crate::hash::HashMaps;
use crate::held::{Held, Maps, State};
use crate::install::{build, install, table_supported};
use crate::recognise::{recognise, Foreign, Found};
use crate::registry::{self, with_cgroup, Slot};
use crate::rules::{self, Rule};
use crate::sys::{self, Attached, BPF_MAP_TYPE_HASH};
use crate::table::{Table, Writer};
use crate::{Error, Result};
use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

/// Capacity of the map `create_prog` makes (libvirt's).
pub const INITIAL_MAX: u32 = 64;

/// A held program, locked against every other writer and still attached.
enum Current<'a> {
    Table {
        held: &'a Held,
        writer: Writer<'a>,
    },
    Hash {
        held: &'a mut Held,
        _lock: cgroup::Locked<'a>,
    },
}

impl Current<'_> {
    fn get(&self, key: u64) -> Option<u32> {
        match self {
            Current::Table { writer, .. } => writer.table().get(key),
            Current::Hash { held, .. } => hash(held).rules().get(&key).copied(),
        }
    }

    fn count(&self) -> usize {
        match self {
            Current::Table { writer, .. } => writer.table().count(),
            Current::Hash { held, .. } => hash(held).rules().len(),
        }
    }

    fn held(&self) -> &Held {
        match self {
            Current::Table { held, .. } => held,
            Current::Hash { held, .. } => held,
        }
    }

    /// Sets `key` to `value` (0 removes it) in place. Ok(false) when there
    /// is no room for a new key: nothing changed.
    fn put(&mut self, key: u64, value: u32) -> Result<bool> {
        if value != 0 && self.get(key).is_none() && self.count() >= self.held().maps.max() as usize
        {
            return Ok(false);
        }
        match self {
            Current::Table { writer, .. } => writer.put(key, value),
            Current::Hash { held, .. } => hash_mut(held).put(key, value),
        }
    }

    fn rules(&self) -> HashMap<u64, u32> {
        match self {
            Current::Table { writer, .. } => writer.table().entries().into_iter().collect(),
            Current::Hash { held, .. } => hash(held).rules().clone(),
        }
    }
}

fn hash(h: &Held) -> &crate::hash::HashMaps {
    match &h.maps {
        Maps::Hash(m) => m,
        Maps::Table(_) => unreachable!("a Current::Hash holds hash maps"),
    }
}

fn hash_mut(h: &mut Held) -> &mut crate::hash::HashMaps {
    match &mut h.maps {
        Maps::Hash(m) => m,
        Maps::Table(_) => unreachable!("a Current::Hash holds hash maps"),
    }
}

/// Locks `held` against other writers and checks that its program is
/// still attached; None when it is not (replaced or detached behind the
/// library's back: the caller detects again).
fn lock_current<'a>(cg: &'a Cgroup, held: &'a mut Held) -> Result<Option<Current<'a>>> {
    let still = |id: u32| -> Result<bool> { Ok(cg.attached()?.ids.contains(&id)) };
    let current = match &held.maps {
        Maps::Table(_) => {
            let held: &Held = held;
            let Maps::Table(t) = &held.maps else {
                unreachable!()
            };
            let writer = t.lock(registry::token()?)?;
            if !still(held.prog_id)? {
                None
            } else {
                Some(Current::Table { held, writer })
            }
        }
        Maps::Hash(_) => {
            let lock = cg.lock()?;
            if !still(held.prog_id)? {
                None
            } else {
                hash_mut(held).refresh()?;
                Some(Current::Hash { held, _lock: lock })
            }
        }
    };
    if current.is_none() {
        log::info!(
            "the program of '{}' is no longer the one this process attached or adopted: \
             detecting again",
            cg.path().display()
        );
    }
    Ok(current)
}

/// What a change does to the rules, both in place and when the maps are
/// built anew.
trait Change {
    /// Applies it in place; Ok(false) when it needs new maps.
    fn in_place(&self, c: &mut Current<'_>) -> Result<bool>;
    /// Applies it to a set of rules.
    fn apply(&self, rules: &mut HashMap<u64, u32>);
}

/// Sets one key to what `f` makes of its old value (0 removes it).
struct Put<F: Fn(Option<u32>) -> u32> {
    key: u64,
    f: F,
}

impl<F: Fn(Option<u32>) -> u32> Change for Put<F> {
    fn in_place(&self, c: &mut Current<'_>) -> Result<bool> {
        let old = c.get(self.key);
        let new = (self.f)(old);
        if old.unwrap_or(0) == new {
            return Ok(true);
        }
        c.put(self.key, new)
    }

    fn apply(&self, rules: &mut HashMap<u64, u32>) {
        match (self.f)(rules.get(&self.key).copied()) {
            0 => rules.remove(&self.key),
            v => rules.insert(self.key, v),
        };
    }
}

/// Every rule removed.
struct Clear;

impl Change for Clear {
    fn in_place(&self, c: &mut Current<'_>) -> Result<bool> {
        if c.count() == 0 {
            return Ok(true);
        }
        match c {
            Current::Table { writer, .. } => {
                writer.clear();
                Ok(true)
            }
            // Format 5 swaps in empty maps in one step.
            Current::Hash { .. } => Ok(false),
        }
    }

    fn apply(&self, rules: &mut HashMap<u64, u32>) {
        rules.clear();
    }
}

/// Several edits in order, as one change: all of them or none. In place,
/// only when the rules they end with fit the held maps: removals first,
/// then changed rules, then new ones (so the count never exceeds the
/// maps'), and what was written is put back when a write fails or finds
/// no room. Else new maps hold the result, replacing the program in one
/// step, or nothing changes.
struct Batch<'a>(&'a [Edit]);

impl Change for Batch<'_> {
    fn in_place(&self, c: &mut Current<'_>) -> Result<bool> {
        let before = c.rules();
        let mut after = before.clone();
        self.apply(&mut after);
        if after.len() > c.held().maps.max() as usize {
            return Ok(false);
        }
        let mut writes: Vec<(u64, u32)> = before
            .keys()
            .chain(after.keys())
            .map(|&k| (k, after.get(&k).copied().unwrap_or(0)))
            .filter(|(k, v)| before.get(k).copied().unwrap_or(0) != *v)
            .collect();
        writes.sort_unstable();
        writes.dedup();
        writes.sort_by_key(|(k, v)| (*v != 0, !before.contains_key(k)));
        for (i, &(key, value)) in writes.iter().enumerate() {
            let failed = match c.put(key, value) {
                Ok(true) => continue,
                Ok(false) => None,
                Err(e) => Some(e),
            };
            // Newest first, each key back to its value before the batch.
            for &(key, _) in writes[..i].iter().rev() {
                let old = before.get(&key).copied().unwrap_or(0);
                if let Err(e) = c.put(key, old).and_then(|put| {
                    put.then_some(())
                        .ok_or_else(|| Error::new(libc::ENOSPC, "no room to put a rule back"))
                }) {
                    return Err(Error::new(
                        e.errno(),
                        format!(
                            "{}; and putting back the rules it had changed failed: {e}",
                            failed.map_or_else(
                                || "no room for a rule in place".to_string(),
                                |f| f.to_string()
                            )
                        ),
                    ));
                }
            }
            return match failed {
                Some(e) => Err(e),
                None => Ok(false),
            };
        }
        Ok(true)
    }

    fn apply(&self, rules: &mut HashMap<u64, u32>) {
        for edit in self.0 {
            match edit {
                Edit::Allow(rule) => {
                    *rules.entry(rule.key()).or_insert(0) |= rule.value();
                }
                Edit::Deny(rule) => {
                    if let Some(v) = rules.get(&rule.key()).copied() {
                        match rule.remove_from(v) {
                            0 => rules.remove(&rule.key()),
                            v => rules.insert(rule.key(), v),
                        };
                    }
                }
                Edit::DenyAll => rules.clear(),
            }
        }
    }
}

/// One edit of [`change`]: what [`allow`], [`deny`] and [`deny_all`] do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edit {
    /// Grants the rule, accumulating with what it already had.
    Allow(Rule),
    /// Removes the rule's permissions from that exact rule.
    Deny(Rule),
    /// Removes every rule (attaching the program if none is).
    DenyAll,
}

/// Room for one more rule (`prepare_prog`).
struct Room;

impl Change for Room {
    fn in_place(&self, c: &mut Current<'_>) -> Result<bool> {
        Ok(c.count() < c.held().maps.max() as usize)
    }

    fn apply(&self, _: &mut HashMap<u64, u32>) {}
}

/// The capacity of maps for `count` rules starting from `max`: doubled
/// until they fit (once for one more rule; more for a [`change`] of many).
fn capacity(max: u32, count: usize) -> Result<u32> {
    let mut m = max.max(1);
    while (m as usize) < count {
        match m.checked_mul(2) {
            Some(next) => m = next,
            None => break,
        }
    }
    Some(m).filter(|&m| count <= m as usize).ok_or_else(|| {
        Error::new(
            libc::E2BIG,
            format!("a map of {max} entries cannot grow to {count} rules"),
        )
    })
}

/// Makes `change` on the cgroup's rules: in place on the held program when
/// it can, else with new maps and program replacing what is attached in
/// one step. `room` extra rules must fit in new maps.
fn modify(cg: &Cgroup, held: &mut Slot<'_>, change: &dyn Change, room: usize) -> Result<()> {
    cg.check_not_root()?;
    // A held program found replaced (another process grew or rebuilt the
    // table) is detected again; a bounded number of times, so that a
    // program replaced without end fails the call instead of spinning.
    for _ in 0..100 {
        if let Some(h) = held.get_mut() {
            let Some(mut c) = lock_current(cg, h)? else {
                held.clear();
                continue;
            };
            if change.in_place(&mut c)? {
                return Ok(());
            }
            let rebuilt = rebuild(cg, c, change, room)?;
            held.set(rebuilt);
            return Ok(());
        }
        if detect_and_change(cg, held, change, room)? {
            return Ok(());
        }
    }
    Err(Error::new(
        libc::EAGAIN,
        format!(
            "the program of '{}' keeps being replaced by another process",
            cg.path().display()
        ),
    ))
}

/// New maps and program for the held rules with `change` made, replacing
/// the held program in one step (the change did not fit in place).
fn rebuild(cg: &Cgroup, c: Current<'_>, change: &dyn Change, room: usize) -> Result<Held> {
    // New maps and program need the cgroup's writers' lock too (format 5
    // holds it already; the lock is re-entrant).
    let _lock = cg.lock()?;
    let mut rules = c.rules();
    change.apply(&mut rules);
    let max = capacity(c.held().maps.max(), rules.len() + room)?;
    let h = c.held();
    if max > h.maps.max() {
        log::info!(
            "growing the map of '{}' from {} to {max} entries",
            cg.path().display(),
            h.maps.max()
        );
    }
    install(
        cg,
        build(max, rules)?,
        Some((h.prog.as_fd(), h.prog_id)),
        None,
    )
}

/// With nothing held: detects what is attached and makes `change` on its
/// rules (converting an earlier program, or creating one). False when our
/// own program was found and adopted as it is: the caller goes round again.
fn detect_and_change(
    cg: &Cgroup,
    held: &mut Slot<'_>,
    change: &dyn Change,
    room: usize,
) -> Result<bool> {
    let _lock = cg.lock()?;
    let attached = cg.attached()?;
    match recognise(cg, &attached)?.0 {
        Some(Found::Ours(h)) => {
            adopt(cg, held, h);
            Ok(false)
        }
        Some(Found::Convert(mut f)) => {
            let mut rules = std::mem::take(&mut f.rules);
            change.apply(&mut rules);
            replace_converted(cg, held, f, rules, room, &attached)?;
            Ok(true)
        }
        None => {
            let mut rules = HashMap::new();
            change.apply(&mut rules);
            let max = capacity(INITIAL_MAX, rules.len() + room)?;
            held.set(install(cg, build(max, rules)?, None, Some(&attached))?);
            Ok(true)
        }
    }
}

/// Holds our own program found attached, as it is.
fn adopt(cg: &Cgroup, held: &mut Slot<'_>, h: Held) {
    log::info!(
        "adopted program {} ({}) on '{}'",
        h.prog_id,
        h.maps.name(),
        cg.path().display()
    );
    held.set(h);
}

/// Replaces an earlier release's or libvirt's program `f` by ours holding
/// `rules` (its rules, converted, with any change applied) and `room` more,
/// in one step.
fn replace_converted(
    cg: &Cgroup,
    held: &mut Slot<'_>,
    f: Foreign,
    rules: HashMap<u64, u32>,
    room: usize,
    attached: &Attached,
) -> Result<()> {
    let count = rules.len();
    let max = capacity(f.max.max(INITIAL_MAX), count + room)?;
    held.set(install(
        cg,
        build(max, rules)?,
        Some((f.prog.as_fd(), f.program.id)),
        Some(attached),
    )?);
    log::info!(
        "replaced {} (id {}) on '{}', {count} rules converted",
        f.what(),
        f.program.id,
        cg.path().display()
    );
    Ok(())
}

/// Adopts what is attached when nothing is held (ours as it is; an earlier
/// release's or libvirt's replaced by ours with its rules); leaves a
/// program it does not know alone.
pub(crate) fn detect_in(cg: &Cgroup, held: &mut Slot<'_>) -> Result<()> {
    if let Some(h) = held.get_mut() {
        if lock_current(cg, h)?.is_some() {
            return Ok(());
        }
        held.clear();
    }
    let _lock = cg.lock()?;
    let attached = cg.attached()?;
    match recognise(cg, &attached)?.0 {
        Some(Found::Ours(h)) => adopt(cg, held, h),
        Some(Found::Convert(mut f)) => {
            cg.check_not_root()?;
            let rules = std::mem::take(&mut f.rules);
            replace_converted(cg, held, f, rules, 0, &attached)?;
        }
        None => {}
    }
    Ok(())
}

/// Adopts a program of this library or of libvirt's C code attached to the
/// cgroup; a program it does not recognise is left alone.
pub fn detect_prog(path: impl AsRef<std::path::Path>) -> Result<()> {
    let path = path.as_ref();
    with_cgroup(path, detect_in)
}

/// Detects, then creates a 64-entry map and attaches the program when
/// nothing is held or found: it never wipes a running VM's rules.
pub fn create_prog(path: impl AsRef<std::path::Path>) -> Result<()> {
    let path = path.as_ref();
    with_cgroup(path, |cg, held| {
        detect_in(cg, held)?;
        if held.is_empty() {
            modify(cg, held, &Room, 0)?;
        }
        Ok(())
    })
}

/// Detect, create, and grow the map when it is full.
pub fn prepare_prog(path: impl AsRef<std::path::Path>) -> Result<()> {
    let path = path.as_ref();
    with_cgroup(path, |cg, held| modify(cg, held, &Room, 1))
}

/// Forgets the state of the cgroup; the program stays attached. Works when
/// the cgroup's directory is already gone.
pub fn remove_prog(path: impl AsRef<std::path::Path>) -> Result<()> {
    let path = path.as_ref();
    if registry::release(path)? {
        log::debug!("released the state of '{}'", rules::printable_path(path));
    }
    Ok(())
}

/// Detaches the library's program from the cgroup, then forgets the state.
pub fn detach_prog(path: impl AsRef<std::path::Path>) -> Result<()> {
    let path = path.as_ref();
    with_cgroup(path, |cg, held| {
        detect_in(cg, held)?;
        if let Some(h) = held.get() {
            let _lock = cg.lock()?;
            // Forgotten only once detached: a failed detach leaves the
            // program enforced, and the library still holds it.
            sys::prog_detach(cg.as_fd(), h.prog.as_fd(), sys::BPF_CGROUP_DEVICE)?;
            log::debug!(
                "detached program {} from '{}'",
                h.prog_id,
                cg.path().display()
            );
            held.clear();
        }
        Ok(())
    })
}

/// The state held for the cgroup, once checked to be current: a program
/// no longer attached is forgotten (nothing is detected).
pub fn state(path: impl AsRef<std::path::Path>) -> Result<State> {
    let path = path.as_ref();
    with_cgroup(path, |cg, held| {
        if let Some(h) = held.get_mut() {
            if !cg.attached()?.ids.contains(&h.prog_id) {
                held.clear();
            } else if let Maps::Hash(m) = &mut h.maps {
                // Another process may have changed the count.
                let _lock = cg.lock()?;
                m.refresh()?;
            }
        }
        held.get().map_or(Ok(State::EMPTY), Held::state)
    })
}

/// Grants `rule`, accumulating with what the rule already had.
pub fn allow(path: impl AsRef<std::path::Path>, rule: &Rule) -> Result<()> {
    let path = path.as_ref();
    with_cgroup(path, |cg, held| allow_in(cg, held, rule))
}

/// Removes the permissions of `rule` from that exact rule.
pub fn deny(path: impl AsRef<std::path::Path>, rule: &Rule) -> Result<()> {
    let path = path.as_ref();
    with_cgroup(path, |cg, held| deny_in(cg, held, rule))
}

fn allow_in(cg: &Cgroup, held: &mut Slot<'_>, rule: &Rule) -> Result<()> {
    let value = rule.value();
    modify(
        cg,
        held,
        &Put {
            key: rule.key(),
            f: |old: Option<u32>| old.unwrap_or(0) | value,
        },
        0,
    )?;
    log::debug!("allowed {rule} in '{}'", cg.path().display());
    Ok(())
}

fn deny_in(cg: &Cgroup, held: &mut Slot<'_>, rule: &Rule) -> Result<()> {
    let r = *rule;
    modify(
        cg,
        held,
        &Put {
            key: rule.key(),
            f: move |old: Option<u32>| old.map_or(0, |v| r.remove_from(v)),
        },
        0,
    )?;
    log::debug!("denied {rule} in '{}'", cg.path().display());
    Ok(())
}

/// Applies `edits` in order as one change: all of them, or (on any error,
/// such as more rules than a map can hold) none. Nothing is validated
/// twice: every rule is already a valid [`Rule`].
pub fn change(path: impl AsRef<std::path::Path>, edits: &[Edit]) -> Result<()> {
    let path = path.as_ref();
    if edits.is_empty() {
        return Ok(());
    }
    with_cgroup(path, |cg, held| {
        modify(cg, held, &Batch(edits), 0)?;
        log::debug!(
            "applied {} edits in '{}'",
            edits.len(),
            rules::printable_path(cg.path())
        );
        Ok(())
    })
}

/// Allows `perms` on the device node at `dev_path`; false (nothing
/// changed) when it is not a device node.
pub fn allow_path(
    path: impl AsRef<std::path::Path>,
    dev_path: impl AsRef<std::path::Path>,
    perms: i32,
) -> Result<bool> {
    let path = path.as_ref();
    on_device_path(path, dev_path.as_ref(), perms, allow_in)
}

/// Denies `perms` on the device node at `dev_path`; false (nothing
/// changed) when it is not a device node.
pub fn deny_path(
    path: impl AsRef<std::path::Path>,
    dev_path: impl AsRef<std::path::Path>,
    perms: i32,
) -> Result<bool> {
    let path = path.as_ref();
    on_device_path(path, dev_path.as_ref(), perms, deny_in)
}

type RuleOp = fn(&Cgroup, &mut Slot<'_>, &Rule) -> Result<()>;

fn on_device_path(
    path: &std::path::Path,
    dev_path: &std::path::Path,
    perms: i32,
    op: RuleOp,
) -> Result<bool> {
    // The cgroup is checked first: a bad group path fails even when
    // dev_path is not a device node. device_rule checks perms before it
    // looks at dev_path, so bad perms fail whatever dev_path is.
    with_cgroup(path, |cg, held| match device_rule(dev_path, perms)? {
        Some(rule) => op(cg, held, &rule).map(|()| true),
        None => {
            log::debug!(
                "'{}' is not a device node: nothing to do",
                rules::printable_path(dev_path)
            );
            Ok(false)
        }
    })
}

/// Program attached and every rule removed.
pub fn deny_all(path: impl AsRef<std::path::Path>) -> Result<()> {
    let path = path.as_ref();
    with_cgroup(path, |cg, held| {
        modify(cg, held, &Clear, 0)?;
        log::debug!("denied all devices in '{}'", cg.path().display());
        Ok(())
    })
}

/// Attaches the device program bound to `map` (a hash map of `max`
/// entries in the library's encoding, or empty), replacing a program of
/// this library or of libvirt's C code in one step. On kernels with the
/// table the rules are copied into a new table, which takes over `map`'s
/// fd number.
pub fn attach_prog(path: impl AsRef<std::path::Path>, map: OwnedFd, max: usize) -> Result<()> {
    let path = path.as_ref();
    with_cgroup(path, |cg, held| {
        cg.check_not_root()?;
        let (max, entries) = check_rule_map(map.as_fd(), max)?;
        let rules: HashMap<u64, u32> = entries.into_iter().collect();
        let maps = if table_supported() {
            let table = Table::create(max, &rules)?;
            // The same number, now the table: the state's mapfd is the
            // number the caller gave.
            let fd = sys::dup_onto(table.into_map(), map)?;
            Maps::Table(Table::open(fd)?.expect("the table just made"))
        } else {
            Maps::Hash(HashMaps::with_map(map, max, rules)?)
        };
        let new = {
            let _lock = cg.lock()?;
            // Other processes' writers wait until the held table is
            // replaced, then find it replaced.
            let _writer = match held.get().map(|h| &h.maps) {
                Some(Maps::Table(t)) => Some(t.lock(registry::token()?)?),
                _ => None,
            };
            let found = match held.get() {
                Some(_) => None,
                None => recognise(cg, &cg.attached()?)?.0,
            };
            let replacing = match (held.get(), &found) {
                (Some(h), _) | (None, Some(Found::Ours(h))) => Some((h.prog.as_fd(), h.prog_id)),
                (None, Some(Found::Convert(f))) => Some((f.prog.as_fd(), f.program.id)),
                (None, None) => None,
            };
            install(cg, maps, replacing, None)?
        };
        held.set(new);
        Ok(())
    })
}

/// Checks that `map` is a hash map with 8-byte keys, 4-byte values and
/// `max` entries whose rules are in the library's encoding; returns (max,
/// the rules).
fn check_rule_map(map: std::os::fd::BorrowedFd<'_>, max: usize) -> Result<(u32, Vec<(u64, u32)>)> {
    let fd = map.as_raw_fd();
    let kind = sys::fd_kind(fd)?;
    if kind != "anon_inode:bpf-map" {
        return Err(Error::invalid(format!(
            "mapfd {fd} is not a BPF map ({kind})"
        )));
    }
    let info = sys::map_info(map)?;
    if info.map_type != BPF_MAP_TYPE_HASH || info.key_size != 8 || info.value_size != 4 {
        return Err(Error::invalid(format!(
            "mapfd {fd} is not a hash map with 8-byte keys and 4-byte values \
             (type {}, key size {}, value size {})",
            info.map_type, info.key_size, info.value_size
        )));
    }
    if max != info.max_entries as usize {
        return Err(Error::invalid(format!(
            "max {max} does not match the map's max_entries {}",
            info.max_entries
        )));
    }
    let entries = sys::map_entries::<u64>(map)?;
    if let Some((k, v)) = entries.iter().find(|(k, v)| !rules::valid_entry(*k, *v)) {
        return Err(Error::invalid(format!(
            "mapfd {fd} holds an entry that is not a rule of this library \
             (key {k:#018x}, value {v:#010x})"
        )));
    }
    Ok((info.max_entries, entries))
}

/// The rule for the device node at `dev_path`, None when it is not one.
pub fn device_rule(dev_path: impl AsRef<std::path::Path>, perms: i32) -> Result<Option<Rule>> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let dev_path = dev_path.as_ref();
    rules::check_perms(perms)?;
    if dev_path.as_os_str().is_empty() {
        return Err(Error::invalid("device path is empty"));
    }
    let meta = std::fs::metadata(dev_path).map_err(|e| {
        Error::sys(
            format_args!("stat('{}')", rules::printable_path(dev_path)),
            e.raw_os_error().unwrap_or(libc::EIO),
        )
    })?;
    let ty = if meta.file_type().is_char_device() {
        b'c'
    } else if meta.file_type().is_block_device() {
        b'b'
    } else {
        return Ok(None);
    };
    let (major, minor) = dev_numbers(meta.rdev());
    Rule::new(ty, major as i32, minor as i32, perms)
        .map(Some)
        .map_err(|e| e.context(format_args!("device '{}'", rules::printable_path(dev_path))))
}

/// glibc's `major()` / `minor()`.
fn dev_numbers(rdev: u64) -> (u32, u32) {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    (major as u32, minor as u32)
}
