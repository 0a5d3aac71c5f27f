//! The process-wide state per cgroup: one entry per resolved path, each
//! behind its own lock so that calls on one cgroup are serialized while
//! calls on different cgroups run in parallel.
#![forbid(unsafe_code)]

use crate::cgroup::Cgroup;
use crate::Result;
use once_cell::sync::Lazy;
use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// What the library holds for a cgroup whose program it attached or adopted.
#[derive(Debug)]
pub(crate) struct Held {
    /// The rule map.
    pub map: OwnedFd,
    /// The wildcard index (see `rules`).
    pub index: OwnedFd,
    /// The attached program.
    pub prog: OwnedFd,
    /// Kernel id of `prog`, to tell whether it is still attached.
    pub prog_id: u32,
    /// `max_entries` of `map`.
    pub max: u32,
    /// What `map` holds: read when the map is adopted, then changed only
    /// after the kernel's copy was, so that an allow or deny is one
    /// syscall and check, list and count need none.
    pub rules: HashMap<u64, u32>,
    /// The non-zero words of `index` in the kernel (a superset of what
    /// `rules` needs: bits are cleared only when the index is rebuilt).
    pub words: HashMap<u32, u32>,
}

#[derive(Debug, Default)]
struct Entry {
    /// (device, inode) of the cgroup the state belongs to.
    id: (u64, u64),
    held: Option<Held>,
    /// The cgroup, kept open while state is held, so that a later call
    /// naming it by a path seen before needs one stat, not a resolution
    /// and an open.
    cg: Option<Cgroup>,
}

#[derive(Default)]
struct Registry {
    /// By resolved path.
    entries: HashMap<PathBuf, Arc<Mutex<Entry>>>,
    /// Paths as callers spelled them -> resolved path, for entries that
    /// hold state.
    aliases: HashMap<String, PathBuf>,
}

static REGISTRY: Lazy<Mutex<Registry>> = Lazy::new(Default::default);

// A panic inside a closure is caught at the C boundary; the state it leaves
// is still made of valid fds, so a poisoned lock is taken over.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Opens the cgroup at `path` and runs `f` on it and its state, with the
/// cgroup's lock held. Before `f` runs, state recorded for another cgroup at
/// the same path, or whose program is no longer attached, is dropped (its
/// fds closed).
pub(crate) fn with_cgroup<R>(
    path: &str,
    f: impl FnOnce(&Cgroup, &mut Option<Held>) -> Result<R>,
) -> Result<R> {
    // A path seen before for a cgroup whose state is held: the directory
    // there must still be that cgroup (same device and inode).
    let known = {
        let registry = lock(&REGISTRY);
        registry
            .aliases
            .get(path)
            .and_then(|resolved| registry.entries.get(resolved))
            .cloned()
    };
    let mut f = Some(f);
    if let (Some(entry), Ok(meta)) = (known, std::fs::metadata(path)) {
        let mut e = lock(&entry);
        if e.cg.is_some() && e.id == (meta.dev(), meta.ino()) {
            let Entry { cg, held, .. } = &mut *e;
            let cg = cg.as_ref().expect("checked");
            let result = run(cg, held, f.take().expect("not run yet"));
            let resolved = cg.path().to_path_buf();
            drop(e);
            finish(path, &resolved, entry);
            return result;
        }
    }
    let cg = Cgroup::open(path)?;
    let resolved = cg.path().to_path_buf();
    let entry = lock(&REGISTRY)
        .entries
        .entry(resolved.clone())
        .or_default()
        .clone();
    let result = {
        let mut e = lock(&entry);
        if e.id != cg.id() {
            if e.held.take().is_some() {
                log::info!(
                    "'{}' is a new cgroup: forgetting the state of the old one",
                    cg.path().display()
                );
            }
            e.id = cg.id();
        }
        let result = run(&cg, &mut e.held, f.take().expect("not run yet"));
        e.cg = e.held.is_some().then_some(cg);
        result
    };
    finish(path, &resolved, entry);
    result
}

/// Drops `held` when its program is no longer attached, then runs `f`. A
/// call that fails leaves no state it did not start with: a program it
/// found on the way (after a restart) is found again by the next call.
/// That forgets nothing the kernel holds: a call changes the kernel in at
/// most one step, its last (an index bit set before a failed rule write
/// only widens the index, which is read back on detection).
fn run<R>(
    cg: &Cgroup,
    held: &mut Option<Held>,
    f: impl FnOnce(&Cgroup, &mut Option<Held>) -> Result<R>,
) -> Result<R> {
    if let Some(h) = held {
        let attached = cg.attached()?;
        if !attached.ids.contains(&h.prog_id) {
            log::info!(
                "program {} is no longer attached to '{}': detecting again",
                h.prog_id,
                cg.path().display()
            );
            *held = None;
        }
    }
    let started_empty = held.is_none();
    let result = f(cg, held);
    if result.is_err() && started_empty {
        *held = None;
    }
    result
}

/// Records `path` as a name of the entry at `resolved` while it holds
/// state; drops the entry (its open cgroup, its names) when it holds
/// nothing and no other thread is using it, so the registry does not grow
/// with every cgroup ever named.
fn finish(path: &str, resolved: &Path, entry: Arc<Mutex<Entry>>) {
    let mut registry = lock(&REGISTRY);
    let mut e = lock(&entry);
    if e.held.is_some() {
        if !registry.aliases.contains_key(path) {
            registry
                .aliases
                .insert(path.to_string(), resolved.to_path_buf());
        }
        return;
    }
    e.cg = None;
    drop(e);
    // Ours and the registry's are the only references: nobody else can
    // reach the entry until the registry lock is released.
    if Arc::strong_count(&entry) == 2 {
        registry.entries.remove(resolved);
        registry.aliases.retain(|_, r| r != resolved);
    }
}
