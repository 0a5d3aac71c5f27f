//! The policy: detect / create / prepare / attach / allow / deny, on top of
//! the registry and the syscall layer. Safe code only.
#![forbid(unsafe_code)]

use crate::cgroup::Cgroup;
use crate::program::{device_program, libvirt_program, PROGRAM_NAME};
use crate::registry::{with_cgroup, Held};
use crate::rules::{self, Rule};
use crate::sys::{self, BPF_F_ALLOW_MULTI, BPF_MAP_TYPE_HASH, BPF_PROG_TYPE_CGROUP_DEVICE};
use crate::{Error, Result};
use once_cell::sync::OnceCell;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};

/// Capacity of the map `create_prog` makes (libvirt's).
pub const INITIAL_MAX: u32 = 64;
const MAP_NAME: &str = "vircgroup_v2dev";
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
        let (max, count) = check_rule_map(map.as_fd(), max)?;
        install(cg, held, map, max, count)
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
    with_cgroup(path, |cg, held| prepare(cg, held).map(drop))
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
        if let Some(h) = held.take() {
            sys::prog_detach(cg.as_fd(), h.prog.as_fd(), sys::BPF_CGROUP_DEVICE)?;
            log::debug!(
                "detached program {} from '{}'",
                h.prog_id,
                cg.path().display()
            );
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
            count: h.count,
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

fn allow_in(cg: &Cgroup, held: &mut Option<Held>, rule: &Rule) -> Result<()> {
    let h = prepare(cg, held)?;
    let key = rule.key();
    let old = sys::map_lookup(h.map.as_fd(), key)?;
    let new = old.unwrap_or(0) | rule.value();
    if old != Some(new) {
        sys::map_update(h.map.as_fd(), key, new)?;
        if old.is_none() {
            h.count += 1;
        }
    }
    log::debug!("allowed {rule} in '{}'", cg.path().display());
    Ok(())
}

fn deny_in(cg: &Cgroup, held: &mut Option<Held>, rule: &Rule) -> Result<()> {
    let h = prepare(cg, held)?;
    let key = rule.key();
    let Some(old) = sys::map_lookup(h.map.as_fd(), key)? else {
        return Ok(());
    };
    let new = rule.remove_from(old);
    if new == 0 {
        if sys::map_delete(h.map.as_fd(), key)? {
            h.count -= 1;
        }
    } else if new != old {
        sys::map_update(h.map.as_fd(), key, new)?;
    }
    log::debug!("denied {rule} in '{}'", cg.path().display());
    Ok(())
}

/// Program attached and every rule removed.
pub fn deny_all(path: &str) -> Result<()> {
    with_cgroup(path, |cg, held| {
        let h = create(cg, held)?;
        // Keys first, then deletes: deleting while walking can restart the walk.
        let keys: Vec<u64> = sys::map_entries(h.map.as_fd())?
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        for key in keys {
            sys::map_delete(h.map.as_fd(), key)?;
        }
        h.count = 0;
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
        let mut values = Vec::with_capacity(4);
        for key in rules::covering_keys(rule.major, rule.minor) {
            values.extend(sys::map_lookup(h.map.as_fd(), key)?);
        }
        Ok(rules::allows(rule, &values))
    })
}

/// The rules as `devices.list` text. A cgroup with no device program allows
/// everything: `a *:* rwm`.
pub fn list(path: &str) -> Result<String> {
    with_cgroup(path, |cg, held| {
        let Some(h) = held_or_unrestricted(cg, held)? else {
            let all = Rule::new(b'a', -1, -1, rules::RWM)?;
            return Ok(format!("{all}\n"));
        };
        Ok(rules::list_text(&sys::map_entries(h.map.as_fd())?))
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
/// number of rules).
fn check_rule_map(map: BorrowedFd<'_>, max: usize) -> Result<(u32, usize)> {
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
    Ok((info.max_entries, entries.len()))
}

/// Tags (the kernel's hash of a program with map fds zeroed) of the two
/// programs this library recognises, learnt from this kernel once per
/// process by loading both against a scratch map.
struct Tags {
    ours: [u8; 8],
    libvirt: [u8; 8],
}

fn tags() -> Result<&'static Tags> {
    static TAGS: OnceCell<Tags> = OnceCell::new();
    TAGS.get_or_try_init(|| {
        let map = new_map(1)?;
        let fd = map.as_raw_fd();
        let tag = |insns, name| -> Result<[u8; 8]> {
            let prog = sys::prog_load(BPF_PROG_TYPE_CGROUP_DEVICE, insns, LICENSE, name)?;
            Ok(sys::prog_info(prog.as_fd())?.tag)
        };
        Ok(Tags {
            ours: tag(&device_program(fd), PROGRAM_NAME)?,
            libvirt: tag(&libvirt_program(fd), "")?,
        })
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Ours,
    Libvirt,
}

/// A recognised program attached to a cgroup, with its map.
struct Found {
    origin: Origin,
    prog: OwnedFd,
    prog_id: u32,
    map: OwnedFd,
    max: u32,
}

/// The first program attached to `cg` that is this library's or libvirt's,
/// with a map of the right shape.
fn recognise(cg: &Cgroup) -> Result<Option<Found>> {
    for id in cg.attached()?.ids {
        let prog = match sys::prog_get_fd_by_id(id) {
            Ok(p) => p,
            // Detached and freed since the query.
            Err(e) if e.errno() == libc::ENOENT => continue,
            Err(e) => return Err(e),
        };
        let info = sys::prog_info(prog.as_fd())?;
        let tags = tags()?;
        let origin = if info.tag == tags.ours && info.name == PROGRAM_NAME {
            Origin::Ours
        } else if info.tag == tags.libvirt {
            Origin::Libvirt
        } else {
            log::debug!(
                "program {id} ({:?}) on '{}' is not ours nor libvirt's",
                info.name,
                cg.path().display()
            );
            continue;
        };
        let [map_id] = info.map_ids[..] else {
            log::warn!("program {id} uses {} maps: not adopted", info.map_ids.len());
            continue;
        };
        let map = sys::map_get_fd_by_id(map_id)?;
        let mi = sys::map_info(map.as_fd())?;
        if mi.map_type != BPF_MAP_TYPE_HASH || mi.key_size != 8 || mi.value_size != 4 {
            log::warn!("map {map_id} of program {id} has an unexpected shape {mi:?}: not adopted");
            continue;
        }
        return Ok(Some(Found {
            origin,
            prog,
            prog_id: id,
            map,
            max: mi.max_entries,
        }));
    }
    Ok(None)
}

fn new_map(max: u32) -> Result<OwnedFd> {
    sys::map_create(BPF_MAP_TYPE_HASH, 8, 4, max, MAP_NAME)
}

/// Adopts a recognised program when none is held.
fn detect(cg: &Cgroup, held: &mut Option<Held>) -> Result<()> {
    if held.is_some() {
        return Ok(());
    }
    let Some(found) = recognise(cg)? else {
        return Ok(());
    };
    let entries = sys::map_entries(found.map.as_fd())?;
    match found.origin {
        Origin::Ours => {
            log::info!(
                "adopted program {} on '{}' with {} rules",
                found.prog_id,
                cg.path().display(),
                entries.len()
            );
            *held = Some(Held {
                count: entries.len(),
                max: found.max,
                map: found.map,
                prog: found.prog,
                prog_id: found.prog_id,
            });
        }
        Origin::Libvirt => {
            // Same keys, our values; then our program replaces libvirt's in one step.
            let map = new_map(found.max)?;
            let mut count = 0;
            for (key, value) in entries {
                match rules::from_libvirt_value(value) {
                    Some(v) if rules::valid_entry(key, v) => {
                        sys::map_update(map.as_fd(), key, v)?;
                        count += 1;
                    }
                    _ => log::warn!(
                        "skipped entry {key:#018x} = {value:#010x} of libvirt's map: not a rule"
                    ),
                }
            }
            install(cg, held, map, found.max, count)?;
            log::info!(
                "replaced libvirt's program {} on '{}', {count} rules converted",
                found.prog_id,
                cg.path().display()
            );
        }
    }
    Ok(())
}

/// A new 64-entry map and program when none is held.
fn create<'a>(cg: &Cgroup, held: &'a mut Option<Held>) -> Result<&'a mut Held> {
    if held.is_none() {
        install(cg, held, new_map(INITIAL_MAX)?, INITIAL_MAX, 0)?;
    }
    Ok(held.as_mut().expect("install sets the state"))
}

/// Detect, create, grow when full.
fn prepare<'a>(cg: &Cgroup, held: &'a mut Option<Held>) -> Result<&'a mut Held> {
    detect(cg, held)?;
    let h = create(cg, held)?;
    if h.count < h.max as usize {
        return Ok(held.as_mut().expect("held"));
    }
    let max = h
        .max
        .checked_mul(2)
        .ok_or_else(|| Error::new(libc::E2BIG, format!("map of {} entries cannot grow", h.max)))?;
    let entries = sys::map_entries(h.map.as_fd())?;
    let map = new_map(max)?;
    for &(key, value) in &entries {
        sys::map_update(map.as_fd(), key, value)?;
    }
    log::info!(
        "growing the map of '{}' from {} to {max} entries",
        cg.path().display(),
        h.max
    );
    install(cg, held, map, max, entries.len())?;
    Ok(held.as_mut().expect("install sets the state"))
}

/// Loads the program for `map` and attaches it, replacing the held program
/// or a recognised one in one step; never replaces a program it does not
/// know. On success `held` is the new state and the old fds are closed.
fn install(
    cg: &Cgroup,
    held: &mut Option<Held>,
    map: OwnedFd,
    max: u32,
    count: usize,
) -> Result<()> {
    let attached = cg.attached()?;
    let found;
    let old: Option<BorrowedFd<'_>> = match held {
        Some(h) => Some(h.prog.as_fd()),
        None => {
            found = recognise(cg)?;
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
        &device_program(map.as_raw_fd()),
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
        "attached program {prog_id} to '{}' (map of {max}, {count} rules)",
        cg.path().display()
    );
    *held = Some(Held {
        map,
        prog,
        prog_id,
        count,
        max,
    });
    Ok(())
}
