//! The policy: detect / create / prepare / attach / allow / deny, on top of
//! the registry and the syscall layer. Safe code only.
#![forbid(unsafe_code)]

use crate::cgroup::Cgroup;
#[cfg(feature = "testing")]
use crate::program::interp;
use crate::program::{device_program, libvirt_program, PROGRAM_NAME};
use crate::registry::{with_cgroup, Held};
use crate::rules::{self, Rule};
use crate::sys::{
    self, BPF_F_ALLOW_MULTI, BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_HASH, BPF_PROG_TYPE_CGROUP_DEVICE,
};
use crate::{Error, Result};
use once_cell::sync::OnceCell;
use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};

/// Capacity of the map `create_prog` makes (libvirt's).
pub const INITIAL_MAX: u32 = 64;
const MAP_NAME: &str = "vircgroup_v2dev";
const INDEX_NAME: &str = "vircgroup_v2idx";
const LICENSE: &str = "GPL";

/// The state of a cgroup, as `vircgroup_v2_devices` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    /// Map fd, -1 when none.
    pub mapfd: i32,
    /// Program fd, -1 when none.
    pub progfd: i32,
    /// Entries in the map.
    pub count: usize,
    /// Capacity of the map.
    pub max: usize,
}

impl State {
    const EMPTY: State = State {
        mapfd: -1,
        progfd: -1,
        count: 0,
        max: 0,
    };
}

/// Whether a device program can be queried at `path`.
pub fn available(path: &str) -> bool {
    match Cgroup::open(path).and_then(|cg| cg.attached()) {
        Ok(_) => true,
        Err(e) => {
            log::info!("cgroup v2 device programs are not available: {e}");
            false
        }
    }
}

/// Attaches the device program bound to `map` (a hash map of `max`
/// entries in the library's encoding, or empty), replacing a program of
/// this library or of libvirt's C code in one step.
pub fn attach_prog(path: &str, map: OwnedFd, max: usize) -> Result<()> {
    with_cgroup(path, |cg, held| {
        let (max, entries) = check_rule_map(map.as_fd(), max)?;
        let rules: HashMap<u64, u32> = entries.into_iter().collect();
        let (index, words) = new_index(&rules)?;
        install(
            cg,
            held,
            Parts {
                map,
                index,
                max,
                rules,
                words,
            },
        )
    })
}

/// Adopts a program of this library or of libvirt's C code attached to the
/// cgroup; a program it does not recognise is left alone.
pub fn detect_prog(path: &str) -> Result<()> {
    with_cgroup(path, detect)
}

/// Creates a 64-entry map and attaches the program when none is held.
pub fn create_prog(path: &str) -> Result<()> {
    with_cgroup(path, |cg, held| create(cg, held).map(drop))
}

/// Detect, create, and grow the map when it is full.
pub fn prepare_prog(path: &str) -> Result<()> {
    with_cgroup(path, prepare)
}

/// Forgets the state of the cgroup; the program stays attached.
pub fn remove_prog(path: &str) -> Result<()> {
    with_cgroup(path, |_, held| {
        *held = None;
        Ok(())
    })
}

/// Detaches the library's program from the cgroup, then forgets the state.
pub fn detach_prog(path: &str) -> Result<()> {
    with_cgroup(path, |cg, held| {
        detect(cg, held)?;
        if let Some(h) = held.as_ref() {
            // Forgotten only once detached: a failed detach leaves the
            // program enforced, and the library still holds it.
            sys::prog_detach(cg.as_fd(), h.prog.as_fd(), sys::BPF_CGROUP_DEVICE)?;
            log::debug!(
                "detached program {} from '{}'",
                h.prog_id,
                cg.path().display()
            );
            *held = None;
        }
        Ok(())
    })
}

/// The state held for the cgroup (nothing is detected).
pub fn state(path: &str) -> Result<State> {
    with_cgroup(path, |_, held| {
        Ok(held.as_ref().map_or(State::EMPTY, |h| State {
            mapfd: h.map.as_raw_fd(),
            progfd: h.prog.as_raw_fd(),
            count: h.rules.len(),
            max: h.max as usize,
        }))
    })
}

/// Grants `rule`, accumulating with what the rule already had.
pub fn allow(path: &str, rule: &Rule) -> Result<()> {
    with_cgroup(path, |cg, held| allow_in(cg, held, rule))
}

/// Removes the permissions of `rule` from that exact rule.
pub fn deny(path: &str, rule: &Rule) -> Result<()> {
    with_cgroup(path, |cg, held| deny_in(cg, held, rule))
}

/// Allows `perms` on the device node at `dev_path`; false (nothing
/// changed) when it is not a device node.
pub fn allow_path(path: &str, dev_path: &str, perms: i32) -> Result<bool> {
    on_device_path(path, dev_path, perms, allow_in)
}

/// Denies `perms` on the device node at `dev_path`; false (nothing
/// changed) when it is not a device node.
pub fn deny_path(path: &str, dev_path: &str, perms: i32) -> Result<bool> {
    on_device_path(path, dev_path, perms, deny_in)
}

type RuleOp = fn(&Cgroup, &mut Option<Held>, &Rule) -> Result<()>;

fn on_device_path(path: &str, dev_path: &str, perms: i32, op: RuleOp) -> Result<bool> {
    // The cgroup is checked first: a bad group path fails even when
    // dev_path is not a device node. device_rule checks perms before it
    // looks at dev_path, so bad perms fail whatever dev_path is.
    with_cgroup(path, |cg, held| match device_rule(dev_path, perms)? {
        Some(rule) => op(cg, held, &rule).map(|()| true),
        None => {
            log::debug!("'{dev_path}' is not a device node: nothing to do");
            Ok(false)
        }
    })
}

// An allow or a deny is one map write (and, the first time a wildcard kind
// shows up, one index write before it); the held copy of the map changes
// only once the kernel's has. When the rule needs a new map (no program
// yet, libvirt's, or a full map), the new map is built with the rule in it
// and replaces the old one in one step. Either way a failed call changes
// nothing.
fn allow_in(cg: &Cgroup, held: &mut Option<Held>, rule: &Rule) -> Result<()> {
    let key = rule.key();
    let from = start(cg, held)?;
    if let (Start::Held, Some(h)) = (&from, held.as_mut()) {
        let old = h.rules.get(&key).copied();
        if old.is_some() || h.rules.len() < h.max as usize {
            let new = old.unwrap_or(0) | rule.value();
            if old != Some(new) {
                if let Some((slot, bits)) = rules::index_bits(key, new) {
                    widen_index(h, slot, bits)?;
                }
                sys::map_update(h.map.as_fd(), key, new)?;
                h.rules.insert(key, new);
            }
            log::debug!("allowed {rule} in '{}'", cg.path().display());
            return Ok(());
        }
    }
    rebuild(cg, held, from, 0, |rules| {
        *rules.entry(key).or_default() |= rule.value();
    })?;
    log::debug!("allowed {rule} in '{}'", cg.path().display());
    Ok(())
}

fn deny_in(cg: &Cgroup, held: &mut Option<Held>, rule: &Rule) -> Result<()> {
    let key = rule.key();
    let from = start(cg, held)?;
    let (Start::Held, Some(h)) = (&from, held.as_mut()) else {
        // No program: one that denies everything, as libvirt's deny makes;
        // libvirt's: replaced with the rule denied.
        rebuild(cg, held, from, 0, |rules| {
            if let Some(old) = rules.get(&key).copied() {
                match rule.remove_from(old) {
                    0 => rules.remove(&key),
                    new => rules.insert(key, new),
                };
            }
        })?;
        log::debug!("denied {rule} in '{}'", cg.path().display());
        return Ok(());
    };
    // A full map needs no room for a deny.
    let Some(old) = h.rules.get(&key).copied() else {
        return Ok(());
    };
    let new = rule.remove_from(old);
    if new == 0 {
        sys::map_delete(h.map.as_fd(), key)?;
        h.rules.remove(&key);
    } else if new != old {
        sys::map_update(h.map.as_fd(), key, new)?;
        h.rules.insert(key, new);
    }
    // The index keeps its bits (a lookup that finds nothing) until the
    // next rebuild: clearing them would be a second write.
    log::debug!("denied {rule} in '{}'", cg.path().display());
    Ok(())
}

/// Sets `bits` in index slot `slot` unless they are set already.
fn widen_index(h: &mut Held, slot: u32, bits: u32) -> Result<()> {
    let word = h.words.get(&slot).copied().unwrap_or(0);
    if word & bits != bits {
        sys::map_update_batch(h.index.as_fd(), &[(slot, word | bits)])?;
        h.words.insert(slot, word | bits);
    }
    Ok(())
}

/// Program attached and every rule removed: an empty map and index of the
/// same capacity replace the held ones in one step, so no instant has some
/// rules gone and others not, and a failure leaves the old policy.
pub fn deny_all(path: &str) -> Result<()> {
    with_cgroup(path, |cg, held| {
        let h = create(cg, held)?;
        if !(h.rules.is_empty() && h.words.is_empty()) {
            let parts = build(h.max, HashMap::new())?;
            install(cg, held, parts)?;
        }
        log::debug!("denied all devices in '{}'", cg.path().display());
        Ok(())
    })
}

/// The rule for the device node at `dev_path`, None when it is not one.
pub fn device_rule(dev_path: &str, perms: i32) -> Result<Option<Rule>> {
    rules::check_perms(perms)?;
    if dev_path.is_empty() {
        return Err(Error::invalid("device path is empty"));
    }
    let meta = std::fs::metadata(dev_path).map_err(|e| {
        Error::sys(
            format_args!("stat('{dev_path}')"),
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
        .map_err(|e| e.context(format_args!("device '{dev_path}'")))
}

/// glibc's `major()` / `minor()`.
fn dev_numbers(rdev: u64) -> (u32, u32) {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    (major as u32, minor as u32)
}

/// Whether the rules held for the cgroup allow `rule`'s access to every
/// device it names, as the program decides. A cgroup with no device program
/// allows everything.
pub fn check(path: &str, rule: &Rule) -> Result<bool> {
    with_cgroup(path, |cg, held| {
        let Some(h) = held_or_unrestricted(cg, held)? else {
            return Ok(true);
        };
        Ok(rules::grants(rule, |k| h.rules.get(&k).copied()))
    })
}

/// The rules as `devices.list` text. A cgroup with no device program allows
/// everything: `a *:* rwm`, the only `a` line a list has.
pub fn list(path: &str) -> Result<String> {
    with_cgroup(path, |cg, held| {
        let Some(h) = held_or_unrestricted(cg, held)? else {
            return Ok(rules::UNRESTRICTED_LIST.to_string());
        };
        let entries: Vec<(u64, u32)> = h.rules.iter().map(|(&k, &v)| (k, v)).collect();
        Ok(rules::list_text(&entries))
    })
}

#[cfg(feature = "testing")]
/// What the kernel runs for the cgroup, for the oracle tests: the exact
/// instructions the library loaded (with the fds it holds; checked against
/// the kernel's tag of the attached program) and the maps they refer to,
/// read back from the kernel. None when the library holds
/// no program for the cgroup (after detection).
pub fn snapshot(path: &str) -> Result<Option<(Vec<crate::insn::Insn>, interp::Maps)>> {
    with_cgroup(path, |cg, held| {
        detect(cg, held)?;
        let Some(h) = held.as_ref() else {
            return Ok(None);
        };
        // The kernel's tag hashes the instructions it was given (map fds
        // zeroed): equal tags tie the rebuilt instructions to the loaded ones.
        let tag = sys::prog_info(h.prog.as_fd())?.tag;
        if tag != tags()?.ours {
            return Err(Error::new(
                libc::EPROTO,
                format!(
                    "program {} has tag {tag:02x?}, not the one of device_program",
                    h.prog_id
                ),
            ));
        }
        let (map, index) = (h.map.as_raw_fd(), h.index.as_raw_fd());
        let rules = sys::map_entries(h.map.as_fd())?.into_iter().collect();
        let words = sys::map_lookup_batch::<u32>(h.index.as_fd(), rules::INDEX_SLOTS as usize)?
            .into_iter()
            .filter(|&(_, w)| w != 0)
            .collect();
        let maps = interp::Maps::from([
            (map, interp::Map::Hash(rules)),
            (
                index,
                interp::Map::Array {
                    len: rules::INDEX_SLOTS,
                    words,
                },
            ),
        ]);
        Ok(Some((device_program(map, index), maps)))
    })
}

/// The held state after detection; None when no device program at all is
/// attached; an error when one is that the library does not know.
fn held_or_unrestricted<'a>(cg: &Cgroup, held: &'a mut Option<Held>) -> Result<Option<&'a Held>> {
    detect(cg, held)?;
    if held.is_none() {
        let attached = cg.attached()?;
        if !attached.ids.is_empty() {
            return Err(Error::new(
                libc::ENOENT,
                format!(
                    "'{}' holds device programs this library does not know ({:?}): \
                     its rules cannot be read",
                    cg.path().display(),
                    attached.ids
                ),
            ));
        }
    }
    Ok(held.as_ref())
}

/// Checks that `map` is a hash map with 8-byte keys, 4-byte values and
/// `max` entries whose rules are in the library's encoding; returns (max,
/// the rules).
fn check_rule_map(map: BorrowedFd<'_>, max: usize) -> Result<(u32, Vec<(u64, u32)>)> {
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
    let entries = sys::map_entries(map)?;
    if let Some((k, v)) = entries.iter().find(|(k, v)| !rules::valid_entry(*k, *v)) {
        return Err(Error::invalid(format!(
            "mapfd {fd} holds an entry that is not a rule of this library \
             (key {k:#018x}, value {v:#010x})"
        )));
    }
    Ok((info.max_entries, entries))
}

/// Tags (the kernel's hash of a program with map fds zeroed) of the two
/// programs this library recognises, learnt from this kernel once per
/// process by loading both against scratch maps.
struct Tags {
    ours: [u8; 8],
    libvirt: [u8; 8],
}

fn tags() -> Result<&'static Tags> {
    static TAGS: OnceCell<Tags> = OnceCell::new();
    TAGS.get_or_try_init(|| {
        let (map, (index, _)) = (new_map(1)?, new_index(&HashMap::new())?);
        let (fd, ifd) = (map.as_raw_fd(), index.as_raw_fd());
        let tag = |insns, name| -> Result<[u8; 8]> {
            let prog = sys::prog_load(BPF_PROG_TYPE_CGROUP_DEVICE, insns, LICENSE, name)?;
            Ok(sys::prog_info(prog.as_fd())?.tag)
        };
        Ok(Tags {
            ours: tag(&device_program(fd, ifd), PROGRAM_NAME)?,
            libvirt: tag(&libvirt_program(fd), "")?,
        })
    })
}

/// A recognised program attached to a cgroup, with its maps.
struct Found {
    prog: OwnedFd,
    prog_id: u32,
    map: OwnedFd,
    max: u32,
    /// Our program's index; None for libvirt's program.
    index: Option<OwnedFd>,
}

/// The maps of program `id` by shape: the rule map (hash, 8-byte keys,
/// 4-byte values) and, when `with_index`, the index (array, 4-byte keys
/// and values, [`rules::INDEX_SLOTS`] entries). None when they do not have
/// exactly those maps.
fn program_maps(id: u32, map_ids: &[u32], with_index: bool) -> Result<Option<Found>> {
    let mut map = None;
    let mut index = None;
    for &map_id in map_ids {
        let fd = sys::map_get_fd_by_id(map_id)?;
        let mi = sys::map_info(fd.as_fd())?;
        match (mi.map_type, mi.key_size, mi.value_size) {
            (BPF_MAP_TYPE_HASH, 8, 4) if map.is_none() => map = Some((fd, mi.max_entries)),
            (BPF_MAP_TYPE_ARRAY, 4, 4)
                if with_index && index.is_none() && mi.max_entries == rules::INDEX_SLOTS =>
            {
                index = Some(fd)
            }
            _ => {
                log::warn!(
                    "map {map_id} of program {id} has an unexpected shape {mi:?}: not adopted"
                );
                return Ok(None);
            }
        }
    }
    match (map, index.is_some() == with_index) {
        (Some((map, max)), true) => Ok(Some(Found {
            prog: sys::prog_get_fd_by_id(id)?,
            prog_id: id,
            map,
            max,
            index,
        })),
        _ => {
            log::warn!("program {id} uses maps {map_ids:?}: not adopted");
            Ok(None)
        }
    }
}

/// The first program attached to `cg` that is this library's or libvirt's,
/// with maps of the right shape.
fn recognise(cg: &Cgroup) -> Result<Option<Found>> {
    recognise_among(cg, &cg.attached()?)
}

/// [`recognise`] among the programs `attached` (a query of `cg`).
fn recognise_among(cg: &Cgroup, attached: &sys::Attached) -> Result<Option<Found>> {
    for &id in &attached.ids {
        let prog = match sys::prog_get_fd_by_id(id) {
            Ok(p) => p,
            // Detached and freed since the query.
            Err(e) if e.errno() == libc::ENOENT => continue,
            Err(e) => return Err(e),
        };
        let info = sys::prog_info(prog.as_fd())?;
        let tags = tags()?;
        let ours = if info.tag == tags.ours && info.name == PROGRAM_NAME {
            true
        } else if info.tag == tags.libvirt {
            false
        } else {
            log::debug!(
                "program {id} ({:?}) on '{}' is not ours nor libvirt's",
                info.name,
                cg.path().display()
            );
            continue;
        };
        if let Some(found) = program_maps(id, &info.map_ids, ours)? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

fn new_map(max: u32) -> Result<OwnedFd> {
    sys::map_create(BPF_MAP_TYPE_HASH, 8, 4, max, MAP_NAME)
}

/// A new index for `rules`, and its non-zero words.
fn new_index(rules: &HashMap<u64, u32>) -> Result<(OwnedFd, HashMap<u32, u32>)> {
    let index = sys::map_create(BPF_MAP_TYPE_ARRAY, 4, 4, rules::INDEX_SLOTS, INDEX_NAME)?;
    let words = rules::index_words(rules);
    sys::map_update_batch(index.as_fd(), &words)?;
    Ok((index, words.into_iter().collect()))
}

/// What a program is loaded for: its maps and what they hold.
struct Parts {
    map: OwnedFd,
    index: OwnedFd,
    max: u32,
    rules: HashMap<u64, u32>,
    words: HashMap<u32, u32>,
}

/// A new map of `max` entries holding `rules`, and its index.
fn build(max: u32, rules: HashMap<u64, u32>) -> Result<Parts> {
    let map = new_map(max)?;
    let entries: Vec<(u64, u32)> = rules.iter().map(|(&k, &v)| (k, v)).collect();
    sys::map_update_batch(map.as_fd(), &entries)?;
    let (index, words) = new_index(&rules)?;
    Ok(Parts {
        map,
        index,
        max,
        rules,
        words,
    })
}

/// Where a change starts from, found without changing anything in the
/// kernel.
enum Start {
    /// `held` is this library's program (held before, or just found).
    Held,
    /// libvirt's program, read but not replaced yet: its id, its map's
    /// capacity and its rules in this library's encoding.
    Libvirt {
        prog_id: u32,
        max: u32,
        rules: HashMap<u64, u32>,
    },
    /// No program of this library's or libvirt's.
    Nothing,
}

/// What the cgroup holds when nothing is held: a program of this library
/// found there is recorded in `held` (its maps read); libvirt's is read
/// and converted, and left for the change to replace.
fn start(cg: &Cgroup, held: &mut Option<Held>) -> Result<Start> {
    if held.is_some() {
        return Ok(Start::Held);
    }
    let Some(found) = recognise(cg)? else {
        return Ok(Start::Nothing);
    };
    let entries = sys::map_entries(found.map.as_fd())?;
    let Some(index) = found.index else {
        // Same keys, our values.
        let mut rules = HashMap::new();
        for (key, value) in entries {
            match rules::from_libvirt_value(value) {
                Some(v) if rules::valid_entry(key, v) => {
                    rules.insert(key, v);
                }
                _ => log::warn!(
                    "skipped entry {key:#018x} = {value:#010x} of libvirt's map: not a rule"
                ),
            }
        }
        return Ok(Start::Libvirt {
            prog_id: found.prog_id,
            max: found.max,
            rules,
        });
    };
    let rules: HashMap<u64, u32> = entries.into_iter().collect();
    let words = sys::map_lookup_batch::<u32>(index.as_fd(), rules::INDEX_SLOTS as usize)?
        .into_iter()
        .filter(|&(_, w)| w != 0)
        .collect();
    let mut h = Held {
        map: found.map,
        index,
        prog: found.prog,
        prog_id: found.prog_id,
        max: found.max,
        rules,
        words,
    };
    // Only another writer can have left a rule the index hides.
    for (slot, bits) in rules::index_words(&h.rules) {
        widen_index(&mut h, slot, bits)?;
    }
    log::info!(
        "adopted program {} on '{}' with {} rules",
        found.prog_id,
        cg.path().display(),
        h.rules.len()
    );
    *held = Some(h);
    Ok(Start::Held)
}

/// Adopts a recognised program when none is held; libvirt's is replaced
/// by this library's, with its rules, in one step.
fn detect(cg: &Cgroup, held: &mut Option<Held>) -> Result<()> {
    match start(cg, held)? {
        from @ Start::Libvirt { .. } => rebuild(cg, held, from, 0, |_| {}),
        Start::Held | Start::Nothing => Ok(()),
    }
}

/// A new map and program replace what the change starts from, in one step:
/// the map holds the rules `from` has, changed by `change`, in the same
/// capacity, or twice that when they do not fit with `room` entries to
/// spare (none held: an empty map of [`INITIAL_MAX`]).
fn rebuild(
    cg: &Cgroup,
    held: &mut Option<Held>,
    from: Start,
    room: usize,
    change: impl FnOnce(&mut HashMap<u64, u32>),
) -> Result<()> {
    let (libvirt, mut max, mut rules) = match from {
        Start::Held => {
            let h = held.as_ref().expect("held");
            (None, h.max, h.rules.clone())
        }
        Start::Libvirt {
            prog_id,
            max,
            rules,
        } => (Some(prog_id), max, rules),
        Start::Nothing => (None, INITIAL_MAX, HashMap::new()),
    };
    change(&mut rules);
    if rules.len() + room > max as usize {
        let grown = max
            .checked_mul(2)
            .ok_or_else(|| Error::new(libc::E2BIG, format!("map of {max} entries cannot grow")))?;
        log::info!(
            "growing the map of '{}' from {max} to {grown} entries",
            cg.path().display()
        );
        max = grown;
    }
    let count = rules.len();
    install(cg, held, build(max, rules)?)?;
    if let Some(id) = libvirt {
        log::info!(
            "replaced libvirt's program {id} on '{}', {count} rules converted",
            cg.path().display()
        );
    }
    Ok(())
}

/// A new 64-entry map and program when none is held.
fn create<'a>(cg: &Cgroup, held: &'a mut Option<Held>) -> Result<&'a mut Held> {
    if held.is_none() {
        install(cg, held, build(INITIAL_MAX, HashMap::new())?)?;
    }
    Ok(held.as_mut().expect("install sets the state"))
}

/// Detect, create, grow when full: at most one new map and program.
fn prepare(cg: &Cgroup, held: &mut Option<Held>) -> Result<()> {
    let from = start(cg, held)?;
    if let (Start::Held, Some(h)) = (&from, held.as_ref()) {
        if h.rules.len() < h.max as usize {
            return Ok(());
        }
    }
    rebuild(cg, held, from, 1, |_| {})
}

/// Loads the program for `parts` and attaches it, replacing the held
/// program or a recognised one in one step; never replaces a program it
/// does not know. On success `held` is the new state and the old fds are
/// closed; on failure nothing changed.
fn install(cg: &Cgroup, held: &mut Option<Held>, parts: Parts) -> Result<()> {
    let attached = cg.attached()?;
    let found;
    let old: Option<BorrowedFd<'_>> = match held {
        Some(h) => Some(h.prog.as_fd()),
        None => {
            found = recognise_among(cg, &attached)?;
            found.as_ref().map(|f| f.prog.as_fd())
        }
    };
    let (flags, replace) = if attached.flags & BPF_F_ALLOW_MULTI != 0 {
        (BPF_F_ALLOW_MULTI, old)
    } else if attached.ids.is_empty() || old.is_some() {
        // Without BPF_F_ALLOW_MULTI, attaching replaces the one program.
        (attached.flags, None)
    } else {
        return Err(Error::new(
            libc::EBUSY,
            format!(
                "'{}' holds a device program this library did not attach (id {:?}); \
                 not replacing it",
                cg.path().display(),
                attached.ids
            ),
        ));
    };
    let prog = sys::prog_load(
        BPF_PROG_TYPE_CGROUP_DEVICE,
        &device_program(parts.map.as_raw_fd(), parts.index.as_raw_fd()),
        LICENSE,
        PROGRAM_NAME,
    )?;
    let prog_id = sys::prog_info(prog.as_fd())?.id;
    sys::prog_attach(
        cg.as_fd(),
        prog.as_fd(),
        sys::BPF_CGROUP_DEVICE,
        flags,
        replace,
    )?;
    log::debug!(
        "attached program {prog_id} to '{}' (map of {}, {} rules)",
        cg.path().display(),
        parts.max,
        parts.rules.len()
    );
    *held = Some(Held {
        map: parts.map,
        index: parts.index,
        prog,
        prog_id,
        max: parts.max,
        rules: parts.rules,
        words: parts.words,
    });
    Ok(())
}

/// A device program attached to a cgroup, as [`inspect`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    /// Kernel id.
    pub id: u32,
    /// Name the program was loaded with (may be empty).
    pub name: String,
}

/// What [`inspect`] read from a cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// The program of this library or of libvirt's C code attached there,
    /// with its rules as map entries in this library's encoding (libvirt's
    /// values converted, entries that are not rules skipped); None when
    /// neither is attached.
    pub rules: Option<(Program, Vec<(u64, u32)>)>,
    /// Whether `rules` comes from libvirt's program.
    pub libvirt: bool,
    /// Every other device program attached there.
    pub others: Vec<Program>,
}

/// Reads the device programs attached to the cgroup and the rules of the
/// one this library recognises, changing nothing: unlike [`list`] and
/// [`check`], a program of libvirt's C code is not adopted (libvirt still
/// updates its own map), and nothing is recorded for the cgroup.
pub fn inspect(path: &str) -> Result<Inspection> {
    let cg = Cgroup::open(path)?;
    let attached = cg.attached()?;
    let found = recognise_among(&cg, &attached)?;
    let mut others = Vec::new();
    for id in attached.ids {
        if found.as_ref().is_some_and(|f| f.prog_id == id) {
            continue;
        }
        match sys::prog_get_fd_by_id(id) {
            Ok(prog) => others.push(Program {
                id,
                name: sys::prog_info(prog.as_fd())?.name,
            }),
            // Detached and freed since the query.
            Err(e) if e.errno() == libc::ENOENT => {}
            Err(e) => return Err(e),
        }
    }
    let Some(found) = found else {
        return Ok(Inspection {
            rules: None,
            libvirt: false,
            others,
        });
    };
    let libvirt = found.index.is_none();
    let mut entries = sys::map_entries(found.map.as_fd())?;
    if libvirt {
        entries = entries
            .into_iter()
            .filter_map(|(k, v)| {
                let v = rules::from_libvirt_value(v).filter(|&v| rules::valid_entry(k, v));
                v.map(|v| (k, v))
            })
            .collect();
    }
    let prog = Program {
        id: found.prog_id,
        name: sys::prog_info(found.prog.as_fd())?.name,
    };
    Ok(Inspection {
        rules: Some((prog, entries)),
        libvirt,
        others,
    })
}
