// SPDX-License-Identifier: LGPL-2.1-or-later
//! Where maps are built and a program installed: the format this kernel
//! gets (the table from Linux 5.5, else format 5), and the one-step
//! replacement of whatever program of this library's or libvirt's a cgroup
//! had.
#![forbid(unsafe_code)]

use crate::cgroup::Cgroup;
use crate::hash::HashMaps;
use crate::held::{Held, Maps};
use crate::program::LICENSE;
use crate::sys::{self, Feature, BPF_F_ALLOW_MULTI, BPF_PROG_TYPE_CGROUP_DEVICE};
use crate::table::Table;
use crate::{Error, Result};
use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// Whether new maps are a table: the kernel creates an mmapable array,
/// lets this process map it, and loads the table program (tried once per
/// process).
pub(crate) fn table_supported() -> bool {
    if let Some(yes) = sys::features::has(Feature::Table) {
        return yes;
    }
    let probe = Table::create(2, &HashMap::new()).and_then(|t| {
        sys::prog_load(
            BPF_PROG_TYPE_CGROUP_DEVICE,
            &crate::program::table::for_table(&t),
            LICENSE,
            crate::program::table::NAME,
        )
    });
    if let Err(e) = &probe {
        log::debug!("the table program cannot be used here: {e}");
    }
    sys::features::set(Feature::Table, probe.is_ok());
    sys::features::has(Feature::Table) == Some(true)
}

/// New maps of capacity `max` holding `rules`, in this kernel's format,
/// attached nowhere.
pub(crate) fn build(max: u32, rules: HashMap<u64, u32>) -> Result<Maps> {
    if table_supported() {
        Ok(Maps::Table(Table::create(max, &rules)?))
    } else {
        Ok(Maps::Hash(HashMaps::create(max, rules)?))
    }
}

/// The program `maps` need, loaded.
fn load(maps: &Maps) -> Result<OwnedFd> {
    sys::prog_load(
        BPF_PROG_TYPE_CGROUP_DEVICE,
        &maps.program(),
        LICENSE,
        maps.name(),
    )
}

/// Loads the program for `maps` and attaches it to `cg`, replacing
/// `replacing` (the program of this library's or libvirt's there, by fd
/// and id) in one step; never replaces a program it was not told of. With
/// the cgroup's lock held, and `attached` what a query made with it held
/// showed (None: query now). On failure nothing changed.
pub(crate) fn install(
    cg: &Cgroup,
    maps: Maps,
    replacing: Option<(BorrowedFd<'_>, u32)>,
    attached: Option<&sys::Attached>,
) -> Result<Held> {
    cg.check_not_root()?;
    let queried;
    let attached = match attached {
        Some(a) => a,
        None => {
            queried = cg.attached()?;
            &queried
        }
    };
    if let Some((_, id)) = replacing {
        if !attached.ids.contains(&id) {
            return Err(Error::new(
                libc::EAGAIN,
                format!(
                    "program {id} is no longer attached to '{}': another process replaced it",
                    cg.path().display()
                ),
            ));
        }
    }
    let multi = attached.flags & BPF_F_ALLOW_MULTI != 0;
    if !multi && !attached.ids.is_empty() && replacing.is_none() {
        return Err(Error::new(
            libc::EBUSY,
            format!(
                "'{}' holds a device program this library did not attach (id {:?}); \
                 not replacing it",
                cg.path().display(),
                attached.ids
            ),
        ));
    }
    let prog = load(&maps)?;
    let prog_id = sys::prog_info(prog.as_fd())?.id;
    attach(cg, prog.as_fd(), attached.flags, replacing.map(|r| r.0))?;
    log::debug!(
        "attached program {prog_id} ({}) to '{}' (capacity {})",
        maps.name(),
        cg.path().display(),
        maps.max()
    );
    Ok(Held {
        prog,
        prog_id,
        maps,
    })
}

/// Attaches `prog` to `cg` whose programs have `flags`, in place of `old`.
///
/// Without `BPF_F_ALLOW_MULTI` a cgroup has one program and attaching
/// replaces it in one step. Beside `ALLOW_MULTI` programs (systemd's)
/// `BPF_F_REPLACE` (Linux 5.6) swaps `old` for `prog` in one step; before
/// 5.6 `prog` is attached next to `old`, then `old` detached: in between
/// a check runs both and passes only what both allow, so nothing is
/// allowed that neither the old nor the new policy allows, and nothing
/// both allow is denied.
pub(crate) fn attach(
    cg: &Cgroup,
    prog: BorrowedFd<'_>,
    flags: u32,
    old: Option<BorrowedFd<'_>>,
) -> Result<()> {
    let fd = cg.as_fd();
    let ty = sys::BPF_CGROUP_DEVICE;
    if flags & BPF_F_ALLOW_MULTI == 0 {
        return sys::prog_attach(fd, prog, ty, flags, None);
    }
    let Some(old) = old else {
        return sys::prog_attach(fd, prog, ty, BPF_F_ALLOW_MULTI, None);
    };
    if sys::features::has(Feature::Replace) != Some(false) {
        match sys::prog_attach(fd, prog, ty, BPF_F_ALLOW_MULTI, Some(old)) {
            Ok(()) => {
                sys::features::set(Feature::Replace, true);
                return Ok(());
            }
            Err(e)
                if e.errno() == libc::EINVAL && sys::features::has(Feature::Replace).is_none() =>
            {
                sys::features::set(Feature::Replace, false);
            }
            Err(e) => return Err(e),
        }
    }
    sys::prog_attach(fd, prog, ty, BPF_F_ALLOW_MULTI, None)?;
    if let Err(e) = sys::prog_detach(fd, old, ty) {
        // Back to the old program alone: the call fails having changed
        // nothing.
        if let Err(undo) = sys::prog_detach(fd, prog, ty) {
            log::error!(
                "'{}': cannot detach the new program after failing to detach the old one \
                 ({undo}): both stay attached, and a device is allowed only if both allow it",
                cg.path().display()
            );
        }
        return Err(e);
    }
    Ok(())
}
