// SPDX-License-Identifier: LGPL-2.1-or-later
//! The process-wide state: one entry per cgroup, keyed by the cgroup's
//! identity (device and inode of its directory), so that the same cgroup
//! reached through two paths (a symlink, a bind mount of the cgroup2
//! filesystem) is one state. Each entry has its own lock: calls on one
//! cgroup are serialized, calls on different cgroups run in parallel.
//!
//! Locks: the registry's own lock is held only to find, add or remove an
//! entry and to record the fds entries own, never while waiting for an
//! entry's lock (an entry is only `try_lock`ed under it; a call takes it
//! after its entry's), so a slow call on one cgroup never holds up a call
//! on another. No lock of the library is held while the log function
//! runs (`capi::log`).
//!
//! Fork: a child forked while another thread held an entry's lock must
//! never wait for it. A registry belongs to the process that made it: in a
//! child (`process::forks` moved) a new, empty one is used, and the
//! parent's is left alone (its fds stay open in the child: every one of
//! them is close-on-exec).
#![forbid(unsafe_code)]

use crate::cgroup::Cgroup;
use crate::held::Held;
use crate::process;
use crate::{Error, Result};

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

type Id = (u64, u64);

/// A cgroup the library holds state for.
#[derive(Debug)]
struct Entry {
    cg: Cgroup,
    held: Option<Held>,
}

#[derive(Default)]
struct Tables {
    entries: HashMap<Id, Arc<Mutex<Entry>>>,
    /// The path each entry was last reached by, so that an entry whose
    /// directory is gone can still be released by path (`remove_prog`).
    names: HashMap<PathBuf, Id>,
    /// Every fd an entry owns: a caller must never hand one of them over.
    /// An fd leaves the set before it is closed (`Slot`), so a number in it
    /// is never one another thread has just got back from the kernel.
    fds: HashSet<RawFd>,
    /// This process's beacon and token as a table's lock holder
    /// (`process::new_beacon`), while any entry exists.
    beacon: Option<(OwnedFd, u64)>,
}

#[derive(Default)]
struct Registry {
    tables: Mutex<Tables>,
}

/// How deep a chain of forks the library follows: a process `DEPTH`
/// forks away from the first one that used it fails instead of sharing
/// a registry with an ancestor.
const DEPTH: usize = 64;

/// One registry per fork depth: a process only ever uses the one of its
/// own depth (`process::forks`), which none of its ancestors touched, so
/// its locks are free in every child however it forked.
static REGISTRIES: [OnceLock<Registry>; DEPTH] = [const { OnceLock::new() }; DEPTH];

/// This process's registry.
fn registry() -> Result<&'static Registry> {
    let depth = process::forks() as usize;
    REGISTRIES
        .get(depth)
        .map(|r| r.get_or_init(Registry::default))
        .ok_or_else(|| {
            Error::new(
                libc::EMFILE,
                format!("this process is {depth} forks away from the first user of the library (at most {})", DEPTH - 1),
            )
        })
}

// A panic inside a closure is caught at the C boundary; the state it leaves
// is still made of valid fds, so a poisoned lock is taken over.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The fds an entry owns.
fn entry_fds(e: &Entry) -> Vec<RawFd> {
    let mut fds = vec![e.cg.as_fd().as_raw_fd()];
    if let Some(h) = &e.held {
        fds.extend(h.fds());
    }
    fds
}

/// Whether the library owns fd `fd` (for any cgroup).
pub(crate) fn owns_fd(fd: RawFd) -> Result<bool> {
    Ok(lock(&registry()?.tables).fds.contains(&fd))
}

/// The program held for a cgroup, as a call on it changes it: a program
/// the call lets go of (replaced, or forgotten) keeps its fds open until
/// the call is over and the registry no longer lists them.
pub(crate) struct Slot<'a> {
    held: &'a mut Option<Held>,
    retired: Vec<Held>,
}

impl Slot<'_> {
    /// What is held.
    pub fn get(&self) -> Option<&Held> {
        self.held.as_ref()
    }

    /// What is held, to change in place (its fds stay the same).
    pub fn get_mut(&mut self) -> Option<&mut Held> {
        self.held.as_mut()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_none()
    }

    /// Holds `held` instead of what was held.
    pub fn set(&mut self, held: Held) {
        self.retired.extend(self.held.replace(held));
    }

    /// Holds nothing.
    pub fn clear(&mut self) {
        self.retired.extend(self.held.take());
    }
}

/// The entry of the cgroup at `path`: the one known for its directory,
/// or a new one (the path validated and opened).
fn entry_for(reg: &Registry, path: &Path) -> Result<Arc<Mutex<Entry>>> {
    let meta = std::fs::metadata(path);
    let known = meta
        .as_ref()
        .ok()
        .and_then(|m| lock(&reg.tables).entries.get(&(m.dev(), m.ino())).cloned());
    Ok(match known {
        Some(e) => e,
        None => {
            // New to the library: validated and opened.
            let cg = Cgroup::open(path)?;
            let id = cg.id();
            let mut t = lock(&reg.tables);
            t.entries
                .entry(id)
                .or_insert_with(|| Arc::new(Mutex::new(Entry { cg, held: None })))
                .clone()
        }
    })
}

/// Runs `f` on the cgroup at `path` and its state, with the cgroup's lock
/// held. The path is looked up with one `stat`: a cgroup seen before is
/// its entry, whatever path reached it.
pub(crate) fn with_cgroup<R>(
    path: &Path,
    f: impl FnOnce(&Cgroup, &mut Slot<'_>) -> Result<R>,
) -> Result<R> {
    let reg = registry()?;
    let entry = entry_for(reg, path)?;
    let mut e = lock(&entry);
    let before = entry_fds(&e);
    let Entry { cg, held } = &mut *e;
    let mut slot = Slot {
        held,
        retired: Vec::new(),
    };
    // A call that fails leaves no state it did not start with: a program
    // it adopted on the way (after a restart) is found again by the next
    // call. That forgets nothing the kernel holds.
    let started_empty = slot.is_empty();
    let result = f(cg, &mut slot);
    if result.is_err() && started_empty {
        slot.clear();
    }
    let retired = slot.retired;
    let after = entry_fds(&e);
    let keep = e.held.is_some();
    let id = e.cg.id();
    {
        let mut t = lock(&reg.tables);
        for fd in &before {
            t.fds.remove(fd);
        }
        t.fds.extend(after);
        if keep && t.names.get(path) != Some(&id) {
            if let Some(old) = t.names.insert(path.to_path_buf(), id) {
                forget_if_gone(&mut t, old);
            }
        }
    }
    // Closed now that no number of theirs is in the set.
    drop(retired);
    drop(e);
    if !keep {
        forget(&mut lock(&reg.tables), id, &entry);
    }
    result
}

/// Drops the entry `id` (its open cgroup, its names) when it holds nothing
/// and no other thread is using it, so the registry does not grow with
/// every cgroup ever named.
fn forget(t: &mut Tables, id: Id, entry: &Arc<Mutex<Entry>>) {
    // Ours and the registry's are the only references: nobody else can
    // reach the entry until the registry lock is released.
    if Arc::strong_count(entry) != 2 {
        return;
    }
    let Ok(e) = entry.try_lock() else { return };
    if e.held.is_some() {
        return;
    }
    for fd in entry_fds(&e) {
        t.fds.remove(&fd);
    }
    drop(e);
    t.entries.remove(&id);
    t.names.retain(|_, v| *v != id);
    drop_beacon_when_idle(t);
}

/// Closes the beacon once no entry is left: no call is under way then, so
/// no table's lock word holds its token, and a process that holds no
/// cgroup's state holds no fd of the library.
fn drop_beacon_when_idle(t: &mut Tables) {
    if t.entries.is_empty() {
        if let Some((fd, _)) = t.beacon.take() {
            t.fds.remove(&fd.as_raw_fd());
        }
    }
}

/// This process's token as a table's lock holder: its beacon's, made on
/// the first change of a table (`process::new_beacon`).
pub(crate) fn token() -> Result<u64> {
    beacon(&mut lock(&registry()?.tables))
}

fn beacon(t: &mut Tables) -> Result<u64> {
    if let Some((_, token)) = &t.beacon {
        return Ok(*token);
    }
    let (fd, token) = process::new_beacon()?;
    t.fds.insert(fd.as_raw_fd());
    t.beacon = Some((fd, token));
    Ok(token)
}

/// A path now names another cgroup: the entry of the one it named before
/// is released when that cgroup's directory is gone (a VM's cgroup removed
/// and made again at the same path).
fn forget_if_gone(t: &mut Tables, old: Id) {
    let Some(entry) = t.entries.get(&old).cloned() else {
        return;
    };
    let Ok(mut e) = entry.try_lock() else { return };
    if e.cg.exists() {
        return;
    }
    log::info!(
        "'{}' was removed: releasing its state",
        e.cg.path().display()
    );
    for fd in entry_fds(&e) {
        t.fds.remove(&fd);
    }
    e.held = None;
    drop(e);
    t.entries.remove(&old);
    t.names.retain(|_, v| *v != old);
    drop_beacon_when_idle(t);
}

/// Releases the state held for `path`, also when its directory is gone
/// (found by the path it was last reached by). Ok(false) when the library
/// holds nothing for it.
pub(crate) fn release(path: &Path) -> Result<bool> {
    let reg = registry()?;
    let id = match std::fs::metadata(path) {
        Ok(m) => Some((m.dev(), m.ino())),
        Err(_) => lock(&reg.tables).names.get(path).copied(),
    };
    let entry = id.and_then(|id| Some((id, lock(&reg.tables).entries.get(&id).cloned()?)));
    let Some((id, entry)) = entry else {
        // Nothing held: a path that is not a cgroup fails as everywhere.
        Cgroup::open(path)?;
        return Ok(false);
    };
    let mut e = lock(&entry);
    e.cg.remove_lock_file();
    let released = e.held.take();
    if let Some(h) = &released {
        let mut t = lock(&reg.tables);
        for fd in h.fds() {
            t.fds.remove(&fd);
        }
    }
    // Closed once out of the set.
    let had = released.is_some();
    drop(released);
    drop(e);
    forget(&mut lock(&reg.tables), id, &entry);
    Ok(had)
}
