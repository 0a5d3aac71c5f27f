// SPDX-License-Identifier: LGPL-2.1-or-later
//! The library, called as libvirt calls it: through the C ABI of
//! `docs/API.md`, nothing else. Whatever it builds (maps, program)
//! is found afterwards with `BPF_PROG_QUERY`; the benchmark assumes
//! nothing about it.

use crate::cases::Spec;
use crate::Res;
use ::vircgroup_v2_devices::capi;
use std::ffi::{CStr, CString};

/// A cgroup path as the C ABI takes it.
pub(crate) struct Path(CString);

impl Path {
    pub(crate) fn new(path: &str) -> Res<Path> {
        Ok(Path(CString::new(path)?))
    }

    fn text(&self) -> String {
        self.0.to_string_lossy().into_owned()
    }
}

/// 0, or the call's name, the path and the library's last error.
fn check(ret: i32, call: &str, path: &Path) -> Res<()> {
    if ret == 0 {
        return Ok(());
    }
    // SAFETY: the library returns a valid C string for this thread.
    let msg = unsafe { CStr::from_ptr(capi::vircgroup_v2_last_error()) };
    Err(format!("{call} {}: {}", path.text(), msg.to_string_lossy()).into())
}

/// `vircgroup_v2_deny_all_devices`.
pub(crate) fn deny_all(path: &Path) -> Res<()> {
    // SAFETY: a NUL-terminated string.
    let ret = unsafe { capi::vircgroup_v2_deny_all_devices(path.0.as_ptr()) };
    check(ret, "deny_all_devices", path)
}

/// `vircgroup_v2_allow_device`.
pub(crate) fn allow(path: &Path, r: &Spec) -> Res<()> {
    // SAFETY: a NUL-terminated string.
    let ret = unsafe {
        capi::vircgroup_v2_allow_device(path.0.as_ptr(), r.ty as _, r.major, r.minor, r.perms)
    };
    check(ret, "allow_device", path)
}

/// `vircgroup_v2_deny_device`.
pub(crate) fn deny(path: &Path, r: &Spec) -> Res<()> {
    // SAFETY: a NUL-terminated string.
    let ret = unsafe {
        capi::vircgroup_v2_deny_device(path.0.as_ptr(), r.ty as _, r.major, r.minor, r.perms)
    };
    check(ret, "deny_device", path)
}

/// `vircgroup_v2_devices_detect_prog`.
pub(crate) fn detect_prog(path: &Path) -> Res<()> {
    // SAFETY: a NUL-terminated string.
    let ret = unsafe { capi::vircgroup_v2_devices_detect_prog(path.0.as_ptr()) };
    check(ret, "detect_prog", path)
}

/// `vircgroup_v2_devices_get_state`: (count, max).
pub(crate) fn state(path: &Path) -> Res<(isize, isize)> {
    let mut s = capi::vircgroup_v2_devices {
        mapfd: -1,
        progfd: -1,
        count: 0,
        max: 0,
    };
    // SAFETY: a NUL-terminated string and a writable struct.
    let ret = unsafe { capi::vircgroup_v2_devices_get_state(path.0.as_ptr(), &mut s) };
    check(ret, "get_state", path)?;
    Ok((s.count, s.max))
}

/// `vircgroup_v2_devices_detach_prog`, then `_remove_prog` (which closes
/// the fds and forgets the cgroup), for the cleanup.
pub(crate) fn forget(path: &Path) -> Res<()> {
    // SAFETY: a NUL-terminated string.
    let detached = unsafe { capi::vircgroup_v2_devices_detach_prog(path.0.as_ptr()) };
    let detached = check(detached, "detach_prog", path);
    // SAFETY: a NUL-terminated string.
    unsafe { capi::vircgroup_v2_devices_remove_prog(path.0.as_ptr()) };
    detached
}
