// SPDX-License-Identifier: LGPL-2.1-or-later
//! Where C comes in: every `extern "C"` export. Each runs through the
//! one boundary (`boundary.rs`: panics, errno, the last error, path
//! arguments); the log callback is `log.rs`.
//!
//! The API's conventions (return values, errno, paths as bytes, messages,
//! threads, fork, kernels) are written once, in the doc comment of
//! [`vircgroup_v2_devices`], and the map encoding in that of
//! [`vircgroup_v2_devices_attach_prog`]: cbindgen carries both into the
//! header.

mod boundary;
mod log;

use boundary::{call, group_call, int_call, path_arg};

use crate::api::{self, State};
use crate::rules::{self, Rule};
use crate::{Error, Result};
use libc::{c_char, c_int, c_void, size_t, ssize_t};
use std::ffi::CString;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;

/// `VIR_CGROUP_DEVICE_READ`: read 1, write 2, mknod 4, the bits every
/// `perms` argument takes. They are libvirt's, not the kernel's
/// `BPF_DEVCG_ACC_*` bits (mknod 1, read 2, write 4) that the program sees
/// and that the map encoding (`vircgroup_v2_devices_attach_prog`) and
/// `vircgroup_v2_devices_get_perms`
/// use: read is 1 here and 2 there, write 2 here and 4 there, mknod 4 here
/// and 1 there. The library converts; a caller never passes
/// `BPF_DEVCG_ACC_*` bits.
pub const VIRCGROUP_DEVICE_READ: c_int = 1;
/// `VIR_CGROUP_DEVICE_WRITE` (2; `BPF_DEVCG_ACC_WRITE` is 4).
pub const VIRCGROUP_DEVICE_WRITE: c_int = 2;
/// `VIR_CGROUP_DEVICE_MKNOD` (4; `BPF_DEVCG_ACC_MKNOD` is 1).
pub const VIRCGROUP_DEVICE_MKNOD: c_int = 4;
/// `VIR_CGROUP_DEVICE_RW` (3; read and write are 6 in `BPF_DEVCG_ACC_*`).
pub const VIRCGROUP_DEVICE_RW: c_int = VIRCGROUP_DEVICE_READ | VIRCGROUP_DEVICE_WRITE;
/// `VIR_CGROUP_DEVICE_RWM` (7, as all three `BPF_DEVCG_ACC_*` bits are).
pub const VIRCGROUP_DEVICE_RWM: c_int = VIRCGROUP_DEVICE_RW | VIRCGROUP_DEVICE_MKNOD;

/// The state of one cgroup, byte for byte the layout of libvirt's
/// `virCgroupV2Devices`.
///
/// API conventions: every int function returns 0 on success and -1 on
/// failure, with errno set and a message for the calling thread in
/// vircgroup_v2_last_error(). A failed call changes nothing: the policy the
/// kernel enforces, the state and the fds are as before. group_path is an
/// absolute path to a directory on a cgroup v2 filesystem, as bytes: a
/// cgroup whose name is not UTF-8 works.
///
/// errno, for every function that takes group_path:
///   EINVAL  a bad argument: NULL, empty or relative path, not on cgroup2,
///           type, numbers or perms out of range, a map of the wrong shape,
///           an fd the library holds; a change asked of the cgroup2 root
///   ENOENT  the path does not exist; check/list: only programs this
///           library does not know are attached (their rules are unknown)
///   EBUSY   a change asked where a program this library does not know is
///           attached without BPF_F_ALLOW_MULTI (it is never replaced)
///   E2BIG   the rules do not fit in the largest map (65,536 rules)
///   EPERM   a privilege is missing (CAP_BPF/CAP_NET_ADMIN/CAP_SYS_ADMIN),
///           or, before Linux 5.11, RLIMIT_MEMLOCK is too low even after
///           the library raised it; the message says which
///   ENOMEM  the kernel is out of memory for BPF (memory cgroup limit)
///   EAGAIN  another process of this library kept the cgroup locked for
///           more than 5 s (10 s for a new program), or kept replacing it
///   other   the failing system call's errno; the message names the call
///           and its arguments (and the verifier log, when a load fails)
///
/// Threads: every function may be called from any thread; calls on one
/// cgroup are serialized, calls on different cgroups never wait for each
/// other. The log function is called with no lock of the library held,
/// after the call's work and before errno is set: it may call the library
/// (the same cgroup too) and vircgroup_v2_set_log_func. fork: a child may
/// call the library on its own state; it never waits for a lock a thread of
/// the parent held (it may wait, at most 5 s, for a change another process
/// is making). A call from a thread-exit destructor works (its message may
/// be kept until the thread exits). No function is async-signal-safe: do
/// not call the library from a signal handler.
///
/// vircgroup_v2_last_error(): the message of the calling thread's last
/// failure, "" when none; valid until that thread's next failing call or its
/// exit; never freed by another thread. A message (and a log message) is
/// one line: control characters and bytes that are not UTF-8 in a path are
/// escaped ("\n", "\xff").
///
/// Other writers: the rules in force are the kernel's. Another process
/// changing the same cgroup through this library (the admin tool, another
/// daemon) is seen by the next call: it is never reverted, never makes a
/// call fail for a lack of room, never makes check or list answer wrong.
/// The same cgroup through two paths (a symlink, a bind mount) is one state.
///
/// Kernels: Linux 4.15 and later. Newer features are probed once per
/// process (the first EINVAL) and fall back with the same policy:
///   5.5  BPF_F_MMAPABLE arrays (with 5.2's BPF_LD_MAP_VALUE): the rule
///        table (format 6, program vcg2dev_f6); before, a hash map and an
///        index read with bpf_map_lookup_elem (format 5, vcg2dev_f5)
///   5.6  BPF_F_REPLACE: beside BPF_F_ALLOW_MULTI programs the new program
///        is attached, then the old one detached (in between a device is
///        allowed only if both allow it)
///   5.6  batch map commands: one update or lookup per entry
///   5.11 memory cgroup accounting of BPF: before, the first EPERM/ENOMEM of
///        a map or program raises RLIMIT_MEMLOCK (soft to hard, then both
///        unlimited with CAP_SYS_RESOURCE), as libbpf does, once per process
/// Programs of every earlier release (formats 1-4, named vircgroup_v2dev)
/// and libvirt's own are adopted: their rules converted, the program
/// replaced in one step.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct vircgroup_v2_devices {
    /// BPF map holding the rules, -1 when none.
    pub mapfd: c_int,
    /// BPF program attached to the cgroup, -1 when none.
    pub progfd: c_int,
    /// Rules (map entries) currently in the map.
    pub count: ssize_t,
    /// Capacity of the map (`max_entries`).
    pub max: ssize_t,
}

/// Receives the library's log messages. `level` is libvirt's
/// `virLogPriority`: 1 debug, 2 info, 3 warning, 4 error. `message` is valid
/// only during the call.
#[allow(non_camel_case_types)]
pub type vircgroup_v2_log_func =
    Option<unsafe extern "C" fn(level: c_int, message: *const c_char, opaque: *mut c_void)>;

fn rule_arg(ty: c_char, major: c_int, minor: c_int, perms: c_int) -> Result<Rule> {
    Rule::new(ty as u8, major, minor, perms)
}

/// True when a `BPF_CGROUP_DEVICE` program can be queried at `group_path`
/// (libvirt asks at the cgroup2 mount point). Never fails: the reason for
/// false goes to the log.
///
/// # Safety
/// `group_path` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn vircgroup_v2_devices_available(group_path: *const c_char) -> bool {
    call(false, || {
        Ok(api::available(path_arg(group_path, "group_path")?))
    })
}

/// Loads the device program bound to `mapfd` and attaches it to the cgroup,
/// replacing in one step a program this library or libvirt's C code
/// attached. `mapfd` must be a BPF hash map with 8-byte keys and 4-byte
/// values, `max` its `max_entries`, empty or holding rules in the encoding
/// below; else -1 with `EINVAL` and nothing changes. `EBUSY` when a program
/// this library does not know is attached without `BPF_F_ALLOW_MULTI`.
///
/// Ownership: the library always takes `mapfd`, and closes it on failure,
/// except an fd the library already holds (one `get_state` returned, for
/// any cgroup): that is refused with `EINVAL` and nothing is closed. On
/// success the fds held before for the cgroup are closed and the state is
/// `{mapfd, progfd, count, max}`. On kernels with the rule table (Linux
/// 5.5) the rules are copied into a table, which takes over the number
/// `mapfd` (the hash map itself is closed): `mapfd` is then the table.
///
/// The map encoding of attach_prog's map (and of libvirt's key): keys are
/// (uint64_t)major << 32 | (uint32_t)minor, with 0xffffffff as the wildcard
/// half. A value holds both rules on those numbers: bits 0-3 the block rule,
/// bits 8-11 the char rule, each as BPF_DEVCG_ACC_* bits (mknod 1, read 2,
/// write 4; not the VIRCGROUP_DEVICE_* values read 1, write 2, mknod 4) plus
/// 8, set exactly when the rule exists; an 'a' rule sets both; no other bit
/// is set and a value is never 0. Example: "c 1:3 rw" is key
/// 0x0000000100000003, value 0x00000e00.
/// A char and a block rule on the same numbers never affect each other.
/// count counts map entries (one per key).
///
/// # Safety
/// `group_path` is NULL or a NUL-terminated string; `mapfd` is an fd the
/// caller owns and gives up.
#[no_mangle]
pub unsafe extern "C" fn vircgroup_v2_devices_attach_prog(
    group_path: *const c_char,
    mapfd: c_int,
    max: size_t,
) -> c_int {
    int_call(|| {
        if mapfd < 0 {
            return Err(Error::invalid(format!(
                "mapfd {mapfd} is not a file descriptor"
            )));
        }
        // An fd that is not open must not be wrapped (closing it would close
        // whatever gets that number next).
        if !crate::sys::fd_is_open(mapfd) {
            return Err(Error::invalid(format!(
                "mapfd {mapfd} is not an open file descriptor"
            )));
        }
        // One the library holds (get_state showed it) is not the caller's
        // to give: taking it would close it twice.
        if crate::registry::owns_fd(mapfd)? {
            return Err(Error::invalid(format!(
                "mapfd {mapfd} is an fd the library holds (vircgroup_v2_devices_get_state \
                 returned it): it is not the caller's to hand over, and stays open"
            )));
        }
        // SAFETY: the fd is open and the caller hands it over.
        let map = unsafe { OwnedFd::from_raw_fd(mapfd) };
        api::attach_prog(path_arg(group_path, "group_path")?, map, max)
    })
}

/// Adopts a program already attached to the cgroup (after a daemon restart):
/// this library's, or libvirt's C implementation's, whose map is converted
/// and whose program is replaced by this library's in one step. A program it
/// does not recognise is never adopted. No program: the state stays empty
/// and 0 is returned.
///
/// # Safety
/// `group_path` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn vircgroup_v2_devices_detect_prog(group_path: *const c_char) -> c_int {
    group_call(group_path, |path| api::detect_prog(path))
}

/// Detects first (as `vircgroup_v2_devices_detect_prog`: a running VM's
/// program is adopted, never wiped); only when nothing is held or found,
/// creates a 64-entry map and attaches the program with it: every device is
/// denied until rules are added. `EBUSY` next to a foreign program attached
/// without `BPF_F_ALLOW_MULTI`.
///
/// # Safety
/// `group_path` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn vircgroup_v2_devices_create_prog(group_path: *const c_char) -> c_int {
    group_call(group_path, |path| api::create_prog(path))
}

/// Detect, create, and when the map is full grow it to twice its size,
/// copying every rule and replacing the program in one step.
///
/// # Safety
/// `group_path` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn vircgroup_v2_devices_prepare_prog(group_path: *const c_char) -> c_int {
    group_call(group_path, |path| api::prepare_prog(path))
}

/// Closes the library's fds for the cgroup and forgets its state; the
/// program stays attached (the kernel frees it with the cgroup). Also when
/// the cgroup's directory is already gone (removed before this call): the
/// state held for that path is released and 0 returned. `ENOENT` for a
/// path that neither exists nor was used before.
///
/// # Safety
/// `group_path` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn vircgroup_v2_devices_remove_prog(group_path: *const c_char) -> c_int {
    group_call(group_path, |path| api::remove_prog(path))
}

/// Detaches the library's program (held or detected) from the cgroup, then
/// forgets the state. Nothing attached: 0.
///
/// # Safety
/// `group_path` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn vircgroup_v2_devices_detach_prog(group_path: *const c_char) -> c_int {
    group_call(group_path, |path| api::detach_prog(path))
}

/// libvirt's value encoding: `access << 16 | type bits` (`'b'` 1, `'c'` 2,
/// anything else 3), `perms` in `VIRCGROUP_DEVICE_*` bits and `access` in
/// `BPF_DEVCG_ACC_*` bits (mknod 1, read 2, write 4):
/// `get_perms(VIRCGROUP_DEVICE_RW, 'c')` is `6 << 16 | 2`.
#[no_mangle]
pub extern "C" fn vircgroup_v2_devices_get_perms(perms: c_int, r#type: c_char) -> u32 {
    call(0, || Ok(rules::get_perms(perms, r#type as u8)))
}

/// libvirt's key: `(uint64_t)major << 32 | (uint32_t)minor`; -1 is the
/// wildcard.
#[no_mangle]
pub extern "C" fn vircgroup_v2_devices_get_key(major: c_int, minor: c_int) -> u64 {
    call(0, || Ok(rules::get_key(major, minor)))
}

/// Grants `perms` (`VIRCGROUP_DEVICE_*`) for `type` (`'c'`, `'b'`, or `'a'`
/// for both) and `major`:`minor` (-1 for any), creating the program first
/// when needed. Permissions accumulate (allow r, then allow w: rw).
/// `EINVAL` for a type other than a/b/c, a major above 4095 or minor above
/// 1048575 other than -1, perms 0 or outside RWM.
///
/// # Safety
/// `group_path` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn vircgroup_v2_allow_device(
    group_path: *const c_char,
    r#type: c_char,
    major: c_int,
    minor: c_int,
    perms: c_int,
) -> c_int {
    int_call(|| {
        let rule = rule_arg(r#type, major, minor, perms)?;
        api::allow(path_arg(group_path, "group_path")?, &rule)
    })
}

/// Removes `perms` from that exact rule; the rule disappears when no
/// permission is left. Denying a rule that does not exist does nothing.
/// Arguments as for `vircgroup_v2_allow_device`.
///
/// # Safety
/// `group_path` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn vircgroup_v2_deny_device(
    group_path: *const c_char,
    r#type: c_char,
    major: c_int,
    minor: c_int,
    perms: c_int,
) -> c_int {
    int_call(|| {
        let rule = rule_arg(r#type, major, minor, perms)?;
        api::deny(path_arg(group_path, "group_path")?, &rule)
    })
}

/// The rules `b *:* perms` and `c *:* perms`: what libvirt's cgroup v1
/// backend writes for it, listed as those two lines (never `a *:* rwm`,
/// which in v1 means no restriction at all). `perms` as for
/// `vircgroup_v2_allow_device`.
///
/// # Safety
/// `group_path` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn vircgroup_v2_allow_all_devices(
    group_path: *const c_char,
    perms: c_int,
) -> c_int {
    int_call(|| {
        let rule = rule_arg(b'a' as c_char, -1, -1, perms)?;
        api::allow(path_arg(group_path, "group_path")?, &rule)
    })
}

/// Program attached and every rule removed: every device is denied.
///
/// # Safety
/// `group_path` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn vircgroup_v2_deny_all_devices(group_path: *const c_char) -> c_int {
    group_call(group_path, |path| api::deny_all(path))
}

/// Copies the state held for the cgroup into `*out` (`{-1, -1, 0, 0}` when
/// none; nothing is detected, and a program no longer attached is
/// forgotten). The fds stay owned by the library: never close them or pass
/// them to `attach_prog`.
///
/// # Safety
/// `group_path` is NULL or a NUL-terminated string; `out` is NULL or points
/// to writable memory for one `vircgroup_v2_devices`.
#[no_mangle]
pub unsafe extern "C" fn vircgroup_v2_devices_get_state(
    group_path: *const c_char,
    out: *mut vircgroup_v2_devices,
) -> c_int {
    int_call(|| {
        if out.is_null() {
            return Err(Error::invalid("out is NULL"));
        }
        let s: State = api::state(path_arg(group_path, "group_path")?)?;
        let value = vircgroup_v2_devices {
            mapfd: s.mapfd,
            progfd: s.progfd,
            count: s.count as ssize_t,
            max: s.max as ssize_t,
        };
        // SAFETY: not NULL and writable per this function's contract.
        unsafe { out.write(value) };
        Ok(())
    })
}

fn device_path_call(
    group_path: *const c_char,
    dev_path: *const c_char,
    perms: c_int,
    apply: fn(&Path, &Path, i32) -> Result<bool>,
) -> c_int {
    call(-1, || {
        let dev_path = path_arg(dev_path, "dev_path")?;
        let group_path = path_arg(group_path, "group_path")?;
        apply(group_path, dev_path, perms).map(|applied| if applied { 0 } else { 1 })
    })
}

/// `stat()`s `dev_path` and allows its char or block device. Returns 0 on
/// success, 1 when `dev_path` is not a device node (nothing changes), -1 on
/// error.
///
/// # Safety
/// `group_path` and `dev_path` are NULL or NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn vircgroup_v2_allow_device_path(
    group_path: *const c_char,
    dev_path: *const c_char,
    perms: c_int,
) -> c_int {
    device_path_call(group_path, dev_path, perms, |g, d, p| {
        api::allow_path(g, d, p)
    })
}

/// `stat()`s `dev_path` and denies `perms` on its char or block device.
/// Returns 0 on success, 1 when `dev_path` is not a device node (nothing
/// changes), -1 on error.
///
/// # Safety
/// `group_path` and `dev_path` are NULL or NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn vircgroup_v2_deny_device_path(
    group_path: *const c_char,
    dev_path: *const c_char,
    perms: c_int,
) -> c_int {
    device_path_call(group_path, dev_path, perms, |g, d, p| {
        api::deny_path(g, d, p)
    })
}

/// 1 if a process in the cgroup may make the access `perms` to every
/// device that `type` `major`:`minor` names, 0 if not, -1 on error. The
/// answer is the kernel's: every device program it runs for a process
/// there (the cgroup's own and its ancestors') must allow it. Programs of
/// this library and of libvirt's C code are read through their maps; any
/// other is run from its instructions as the kernel reports them, and one
/// that cannot be evaluated fails with `EOPNOTSUPP` naming it. No program
/// on the way: every device is allowed (1).
///
/// # Safety
/// `group_path` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn vircgroup_v2_devices_check(
    group_path: *const c_char,
    r#type: c_char,
    major: c_int,
    minor: c_int,
    perms: c_int,
) -> c_int {
    call(-1, || {
        let rule = rule_arg(r#type, major, minor, perms)?;
        api::check(path_arg(group_path, "group_path")?, &rule).map(c_int::from)
    })
}

/// The rules as cgroup v1 `devices.list` lines (`c 1:3 rw`, `b 8:* r`),
/// one per line, each ending in a newline: exactly the set of lines the
/// kernel's cgroup v1 `devices.list` shows after libvirt's v1 backend made
/// the same calls, sorted by type (b, c), major, minor (`*` last). So a
/// char and a block rule are two lines (`b 8:* m` and `c 8:* m`, never a
/// merged `a 8:* m`: in v1 a line starting with `a` means every device),
/// `allow_all_devices(p)` lists as `b *:* p` and `c *:* p`, and `a *:* rwm`
/// is the list of a cgroup no device program restricts, and only of that.
/// The rules are those in force for a process in the cgroup: the
/// intersection of every device program's on the way (its own, its
/// ancestors'); a program whose rules cannot be read (not this library's
/// nor libvirt's) fails with `EOPNOTSUPP` naming it. An empty policy
/// (every device denied) is the empty string. Returns a `malloc`ed string
/// the caller frees with `free()`, or NULL with errno on failure.
///
/// # Safety
/// `group_path` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn vircgroup_v2_devices_list(group_path: *const c_char) -> *mut c_char {
    call(std::ptr::null_mut(), || {
        let text = api::list(path_arg(group_path, "group_path")?)?;
        let text = CString::new(text).map_err(|_| Error::new(libc::EIO, "NUL in list"))?;
        // SAFETY: `text` is a valid C string; strdup copies it into malloc'ed memory.
        let out = unsafe { libc::strdup(text.as_ptr()) };
        if out.is_null() {
            return Err(Error::new(libc::ENOMEM, "strdup: out of memory"));
        }
        Ok(out)
    })
}

/// Why an access is allowed or denied for a process in the cgroup: one
/// line per device program the kernel runs there, from the root down,
/// `cgroup=PATH prog=ID owner=OWNER verdict=allow|deny[ rule="V1 LINE"]`,
/// then `result=allowed` or `result=denied`. OWNER is
/// `vircgroup-v2-devices/N` (this library, format N), `libvirt` (libvirt's
/// C program) or `other:NAME`; `rule` is the line that granted the access,
/// where the owner's rules are known. Answers as `check` does (one
/// computation). Returns a `malloc`ed string the caller frees with
/// `free()`, or NULL with errno on failure (`EOPNOTSUPP` for a program
/// whose answer cannot be established, named in the message).
///
/// # Safety
/// `group_path` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn vircgroup_v2_devices_explain(
    group_path: *const c_char,
    r#type: c_char,
    major: c_int,
    minor: c_int,
    perms: c_int,
) -> *mut c_char {
    call(std::ptr::null_mut(), || {
        let rule = rule_arg(r#type, major, minor, perms)?;
        malloced(api::explain(path_arg(group_path, "group_path")?, &rule)?.text())
    })
}

/// `text` in `malloc`ed memory.
fn malloced(text: String) -> Result<*mut c_char> {
    let text = CString::new(text).map_err(|_| Error::new(libc::EIO, "NUL in the text"))?;
    // SAFETY: `text` is a valid C string; strdup copies it into malloc'ed memory.
    let out = unsafe { libc::strdup(text.as_ptr()) };
    if out.is_null() {
        return Err(Error::new(libc::ENOMEM, "strdup: out of memory"));
    }
    Ok(out)
}

/// The message of the calling thread's last failure ("" when none). The
/// pointer stays valid until the thread's next failing call of this
/// library, or until the thread exits; it is never freed by another
/// thread.
#[no_mangle]
pub extern "C" fn vircgroup_v2_last_error() -> *const c_char {
    call(std::ptr::null(), || Ok(boundary::last_error()))
}

/// Sends the library's log messages to `func` (with `opaque`), from any
/// thread; NULL stops them. Nothing is logged by default.
#[no_mangle]
pub extern "C" fn vircgroup_v2_set_log_func(func: vircgroup_v2_log_func, opaque: *mut c_void) {
    call((), || {
        log::set(func, opaque);
        Ok(())
    })
}
