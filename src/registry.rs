//! The process-wide state per cgroup: one entry per resolved path, each
//! behind its own lock so that calls on one cgroup are serialized while
//! calls on different cgroups run in parallel.
#![forbid(unsafe_code)]

use crate::cgroup::Cgroup;
use crate::Result;
use once_cell::sync::Lazy;
use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
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
}

type Registry = HashMap<PathBuf, Arc<Mutex<Entry>>>;

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
    let cg = &Cgroup::open(path)?;
    let entry = lock(&REGISTRY)
        .entry(cg.path().to_path_buf())
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
        if let Some(held) = &e.held {
            let attached = cg.attached()?;
            if !attached.ids.contains(&held.prog_id) {
                log::info!(
                    "program {} is no longer attached to '{}': detecting again",
                    held.prog_id,
                    cg.path().display()
                );
                e.held = None;
            }
        }
        f(cg, &mut e.held)
    };
    forget_if_unused(cg, entry);
    result
}

/// Drops the registry entry of `cg` when it holds nothing and no other
/// thread is using it, so the registry does not grow with every cgroup ever
/// named.
fn forget_if_unused(cg: &Cgroup, entry: Arc<Mutex<Entry>>) {
    let mut registry = lock(&REGISTRY);
    // Ours and the registry's are the only references: nobody else can
    // reach the entry until the registry lock is released.
    if Arc::strong_count(&entry) == 2 && lock(&entry).held.is_none() {
        registry.remove(cg.path());
    }
}
