// SPDX-License-Identifier: LGPL-2.1-or-later
//! bpf(2): one function per command, each filling only the `bpf_attr`
//! fields it uses, all through the one entry [`bpf`].
use super::cmd;
use super::features::{Feature, Since, BASE};
use super::memlock::memlock_retry;
use crate::insn::Insn;
use crate::{Error, Result};
use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// `BPF_MAP_TYPE_HASH`.
pub const BPF_MAP_TYPE_HASH: u32 = 1;
/// `BPF_MAP_TYPE_ARRAY`.
pub const BPF_MAP_TYPE_ARRAY: u32 = 2;
/// `BPF_PROG_TYPE_CGROUP_DEVICE`.
pub const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
/// `BPF_CGROUP_DEVICE` attach type.
pub const BPF_CGROUP_DEVICE: u32 = 6;
/// `BPF_F_ALLOW_OVERRIDE`.
pub const BPF_F_ALLOW_OVERRIDE: u32 = 1;
/// `BPF_F_ALLOW_MULTI`.
pub const BPF_F_ALLOW_MULTI: u32 = 2;
/// `BPF_F_REPLACE`.
pub const BPF_F_REPLACE: u32 = 4;
/// `BPF_F_MMAPABLE` (Linux 5.5): an array map userspace can `mmap`.
pub const BPF_F_MMAPABLE: u32 = 1 << 10;
/// `BPF_ANY` update flag.
pub const BPF_ANY: u64 = 0;

/// Bytes of the attr every command passes: more than the kernel's
/// `union bpf_attr` (144 bytes in Linux 6.1's UAPI header; later kernels
/// add a few fields), so whatever a kernel writes back lands inside it,
/// with room for the fields yet to come. Linux 6.17 to
/// 7.1 write `query.revision` (8 bytes at offset 56) back on every
/// `BPF_PROG_QUERY`, whatever size was passed; a 32-byte attr would take
/// that write on the stack past it. Kernels accept a larger size when the
/// bytes past their own union are zero, and refuse sizes above a page.
pub(crate) const ATTR_SIZE: usize = 256;

/// The memory handed to the kernel for every command: `ATTR_SIZE` bytes,
/// aligned as `union bpf_attr` (its members hold `__aligned_u64`).
#[repr(C, align(8))]
pub(crate) struct AttrBuf(pub(crate) [u8; ATTR_SIZE]);

/// The one entry into bpf(2). Returns the syscall's non-negative result or
/// the errno. `attr` is copied into a zero-filled [`AttrBuf`], which is
/// what the kernel reads and writes, and copied back from it afterwards.
fn bpf<T>(cmd: i32, attr: &mut T, since: Since) -> std::result::Result<i64, i32> {
    const { assert!(std::mem::size_of::<T>() <= ATTR_SIZE) };
    #[cfg(feature = "testing")]
    {
        super::hook::count(cmd);
        super::hook::delayed(cmd);
        if let Some(errno) = super::hook::refused(since) {
            return Err(errno);
        }
        if let Some(errno) = super::hook::injected(cmd) {
            return Err(errno);
        }
    }
    #[cfg(not(feature = "testing"))]
    let _ = since;
    let mut buf = AttrBuf([0; ATTR_SIZE]);
    // SAFETY: `attr` is a live `#[repr(C)]` struct of size_of::<T>() bytes,
    // at most ATTR_SIZE (checked above), and `buf` is a distinct local.
    unsafe {
        std::ptr::copy_nonoverlapping(
            attr as *const T as *const u8,
            buf.0.as_mut_ptr(),
            std::mem::size_of::<T>(),
        )
    };
    let ret = syscall_bpf(cmd, &mut buf);
    // SAFETY: `buf` is ATTR_SIZE (more than 64) bytes of this function's.
    #[cfg(feature = "testing")]
    unsafe {
        super::hook::wrote_back(cmd, buf.0.as_mut_ptr())
    };
    // SAFETY: as above, back: the kernel wrote `T`'s fields as it lays
    // them out (every attr here is the kernel's member for `cmd`, and
    // every field of them is an integer, valid for any bytes).
    unsafe {
        std::ptr::copy_nonoverlapping(
            buf.0.as_ptr(),
            attr as *mut T as *mut u8,
            std::mem::size_of::<T>(),
        )
    };
    ret
}

/// bpf(2) itself, on a whole [`AttrBuf`].
fn syscall_bpf(cmd: i32, buf: &mut AttrBuf) -> std::result::Result<i64, i32> {
    // SAFETY: `buf` is ATTR_SIZE bytes of live memory, laid out as the
    // kernel's `union bpf_attr` member for `cmd` and zero past it, and its
    // whole size is passed: the kernel reads and writes only within it.
    // Every pointer inside it was set by the caller to memory that
    // outlives this call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            buf.0.as_mut_ptr() as *mut libc::c_void,
            ATTR_SIZE as libc::c_uint,
        )
    };
    if ret < 0 {
        Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO))
    } else {
        Ok(ret as i64)
    }
}

/// The error of a failed command: the call with its arguments and the
/// errno, and, for an errno that a missing privilege or a memory limit
/// gives, what to check. Every failed bpf(2) call goes through here.
fn failed(command: i32, call: impl std::fmt::Display, errno: i32) -> Error {
    let err = Error::sys(call, errno);
    match hint(command, errno) {
        Some(hint) => Error::new(errno, format!("{err}; {hint}")),
        None => err,
    }
}

/// What EPERM or ENOMEM from `command` most likely means, for a device
/// program on a cgroup.
fn hint(command: i32, errno: i32) -> Option<&'static str> {
    Some(match (command, errno) {
        (cmd::MAP_CREATE, libc::EPERM) => {
            "creating a BPF map needs CAP_BPF or CAP_SYS_ADMIN while \
             kernel.unprivileged_bpf_disabled is set; before Linux 5.11 it also fails \
             so when RLIMIT_MEMLOCK (ulimit -l) is too low for the map"
        }
        (cmd::MAP_CREATE | cmd::PROG_LOAD | cmd::MAP_UPDATE_BATCH, libc::ENOMEM) => {
            "out of memory for BPF: before Linux 5.11 maps and programs count against \
             RLIMIT_MEMLOCK (ulimit -l), since then against the memory cgroup's limit"
        }
        (cmd::PROG_LOAD, libc::EPERM) => {
            "loading a device program needs CAP_BPF and CAP_NET_ADMIN, or \
             CAP_SYS_ADMIN; before Linux 5.11 it also fails so when RLIMIT_MEMLOCK \
             (ulimit -l) is too low"
        }
        (cmd::PROG_QUERY, libc::EPERM) => {
            "querying a cgroup's device programs needs CAP_NET_ADMIN, and CAP_BPF or \
             CAP_SYS_ADMIN on kernels that keep all of bpf(2) to those while \
             kernel.unprivileged_bpf_disabled is set (such as Debian's 5.10)"
        }
        (cmd::PROG_GET_FD_BY_ID | cmd::MAP_GET_FD_BY_ID, libc::EPERM) => {
            "opening a BPF program or map by id needs CAP_SYS_ADMIN"
        }
        (cmd::PROG_ATTACH | cmd::PROG_DETACH, libc::EPERM) => {
            "the programs on the cgroup or a parent were attached with flags that \
             forbid it (BPF_F_ALLOW_MULTI, BPF_F_ALLOW_OVERRIDE), or, on older \
             kernels, CAP_NET_ADMIN or CAP_SYS_ADMIN is missing"
        }
        (_, libc::EPERM) => {
            "a privilege is missing (CAP_BPF, CAP_NET_ADMIN or CAP_SYS_ADMIN), or a \
             security module refused"
        }
        _ => return None,
    })
}

fn fd_result(ret: i64) -> OwnedFd {
    // SAFETY: the command returned a new fd that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(ret as RawFd) }
}

fn ptr<T: ?Sized>(p: *const T) -> u64 {
    p as *const u8 as usize as u64
}

fn obj_name(name: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    let n = name.len().min(15);
    out[..n].copy_from_slice(&name.as_bytes()[..n]);
    out
}

#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
    // Always 0, but part of the command's attr: valgrind reads them.
    map_ifindex: u32,
    btf_fd: u32,
    btf_key_type_id: u32,
    btf_value_type_id: u32,
}

/// `BPF_MAP_CREATE` with no map flags.
pub fn map_create(
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    name: &str,
) -> Result<OwnedFd> {
    map_create_with(map_type, key_size, value_size, max_entries, 0, name)
}

/// `BPF_MAP_CREATE` with `map_flags` (`BPF_F_*`).
pub fn map_create_with(
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    name: &str,
) -> Result<OwnedFd> {
    let since = if map_flags & BPF_F_MMAPABLE != 0 {
        Since(5, 5)
    } else {
        BASE
    };
    let attempt = || {
        let mut attr = MapCreateAttr {
            map_type,
            key_size,
            value_size,
            max_entries,
            map_flags,
            map_name: obj_name(name),
            ..Default::default()
        };
        bpf(cmd::MAP_CREATE, &mut attr, since).map(fd_result)
    };
    memlock_retry(attempt).map_err(|e| {
        failed(
            cmd::MAP_CREATE,
            format_args!(
                "bpf(BPF_MAP_CREATE, type {map_type}, key {key_size}, value {value_size}, \
                 max_entries {max_entries}, flags {map_flags:#x})"
            ),
            e,
        )
    })
}

#[repr(C)]
#[derive(Default)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value_or_next_key: u64,
    flags: u64,
}

fn elem_attr<K>(map: BorrowedFd<'_>, key: *const K, value: u64, flags: u64) -> MapElemAttr {
    MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: if key.is_null() { 0 } else { ptr(key) },
        value_or_next_key: value,
        flags,
        ..Default::default()
    }
}

/// `BPF_MAP_LOOKUP_ELEM` on a map with 8-byte (`u64`) or 4-byte (`u32`)
/// keys and 4-byte values; `Ok(None)` when the key is absent.
pub fn map_lookup<K: Key>(map: BorrowedFd<'_>, key: K) -> Result<Option<u32>> {
    let mut value = 0u32;
    let mut attr = elem_attr(map, &key, ptr(&mut value as *mut u32), 0);
    let ret = bpf(cmd::MAP_LOOKUP_ELEM, &mut attr, BASE);
    let found = key_found(ret, cmd::MAP_LOOKUP_ELEM, || {
        format!(
            "bpf(BPF_MAP_LOOKUP_ELEM, map fd {}, key {key:#x})",
            map.as_raw_fd()
        )
    })?;
    Ok(found.then_some(value))
}

/// `BPF_MAP_UPDATE_ELEM` with `BPF_ANY`.
pub fn map_update<K: Key>(map: BorrowedFd<'_>, key: K, value: u32) -> Result<()> {
    let mut attr = elem_attr(map, &key, ptr(&value as *const u32), BPF_ANY);
    bpf(cmd::MAP_UPDATE_ELEM, &mut attr, BASE)
        .map(drop)
        .map_err(|e| {
            failed(
                cmd::MAP_UPDATE_ELEM,
                format_args!(
                    "bpf(BPF_MAP_UPDATE_ELEM, map fd {}, key {key:#x}, value {value:#010x})",
                    map.as_raw_fd()
                ),
                e,
            )
        })
}

/// `BPF_MAP_DELETE_ELEM`; `Ok(false)` when the key was absent.
pub fn map_delete<K: Key>(map: BorrowedFd<'_>, key: K) -> Result<bool> {
    let mut attr = elem_attr(map, &key, 0, 0);
    let ret = bpf(cmd::MAP_DELETE_ELEM, &mut attr, BASE);
    key_found(ret, cmd::MAP_DELETE_ELEM, || {
        format!(
            "bpf(BPF_MAP_DELETE_ELEM, map fd {}, key {key:#x})",
            map.as_raw_fd()
        )
    })
}

/// What a lookup, delete or next-key answered: true when the kernel found
/// the key, false for `ENOENT` (an expected answer, not an error), else the
/// error of the call `call` describes.
fn key_found(
    ret: std::result::Result<i64, i32>,
    command: i32,
    call: impl FnOnce() -> String,
) -> Result<bool> {
    match ret {
        Ok(_) => Ok(true),
        Err(libc::ENOENT) => Ok(false),
        Err(e) => Err(failed(command, call(), e)),
    }
}

#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// A map key: `u64` for the rule map, `u32` for the index.
pub trait Key: Copy + Default + std::fmt::Debug + std::fmt::LowerHex {}
impl Key for u32 {}
impl Key for u64 {}

/// `BPF_MAP_UPDATE_BATCH` (`BPF_ANY`, Linux 5.6): writes every `(key,
/// value)` in one call; on a kernel without it (the first `EINVAL` tells,
/// and is remembered) one `BPF_MAP_UPDATE_ELEM` per entry. Either way an
/// error may leave a prefix of the entries written: callers fill maps that
/// no program uses yet.
pub fn map_update_batch<K: Key>(map: BorrowedFd<'_>, entries: &[(K, u32)]) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    if super::features::has(Feature::Batch) != Some(false) {
        let keys: Vec<K> = entries.iter().map(|e| e.0).collect();
        let values: Vec<u32> = entries.iter().map(|e| e.1).collect();
        let mut attr = BatchAttr {
            keys: ptr(keys.as_ptr()),
            values: ptr(values.as_ptr()),
            count: entries.len() as u32,
            map_fd: map.as_raw_fd() as u32,
            elem_flags: BPF_ANY,
            ..Default::default()
        };
        match bpf(cmd::MAP_UPDATE_BATCH, &mut attr, Since(5, 6)) {
            Ok(_) => {
                super::features::set(Feature::Batch, true);
                return Ok(());
            }
            // Before 5.6 the command does not exist: nothing was written.
            Err(libc::EINVAL) if super::features::has(Feature::Batch).is_none() => {
                super::features::set(Feature::Batch, false);
            }
            Err(e) => {
                return Err(failed(
                    cmd::MAP_UPDATE_BATCH,
                    format_args!(
                        "bpf(BPF_MAP_UPDATE_BATCH, map fd {}, {} entries, the first {} written)",
                        map.as_raw_fd(),
                        entries.len(),
                        attr.count.min(entries.len() as u32)
                    ),
                    e,
                ))
            }
        }
    }
    for &(key, value) in entries {
        map_update(map, key, value)?;
    }
    Ok(())
}

/// Every entry of a map of at most `max` entries: `BPF_MAP_LOOKUP_BATCH`
/// (Linux 5.6) in as few calls as the kernel allows, or on a kernel without
/// it (remembered) one `BPF_MAP_GET_NEXT_KEY` and one lookup per entry.
pub fn map_lookup_batch<K: Key>(map: BorrowedFd<'_>, max: usize) -> Result<Vec<(K, u32)>> {
    if super::features::has(Feature::Batch) == Some(false) {
        return map_entries(map);
    }
    let chunk = max.max(1);
    let mut keys = vec![K::default(); chunk];
    let mut values = vec![0u32; chunk];
    // The position token: a bucket (u32) for hash maps, a key for arrays.
    let (mut token_in, mut token_out) = (0u64, 0u64);
    let mut out = Vec::new();
    let mut first = true;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first {
                0
            } else {
                ptr(&token_in as *const u64)
            },
            out_batch: ptr(&mut token_out as *mut u64),
            keys: ptr(keys.as_mut_ptr()),
            values: ptr(values.as_mut_ptr()),
            count: chunk as u32,
            map_fd: map.as_raw_fd() as u32,
            ..Default::default()
        };
        let done = match bpf(cmd::MAP_LOOKUP_BATCH, &mut attr, Since(5, 6)) {
            Ok(_) => false,
            Err(libc::ENOENT) => true,
            Err(libc::EINVAL) if first && super::features::has(Feature::Batch).is_none() => {
                super::features::set(Feature::Batch, false);
                return map_entries(map);
            }
            Err(e) => {
                return Err(failed(
                    cmd::MAP_LOOKUP_BATCH,
                    format_args!("bpf(BPF_MAP_LOOKUP_BATCH, map fd {})", map.as_raw_fd()),
                    e,
                ))
            }
        };
        super::features::set(Feature::Batch, true);
        let n = attr.count as usize;
        out.extend(keys[..n].iter().copied().zip(values[..n].iter().copied()));
        if done || n == 0 {
            return Ok(out);
        }
        token_in = token_out;
        first = false;
    }
}

/// `BPF_MAP_GET_NEXT_KEY`: the key after `key`, or the first key when `key`
/// is None (a NULL key, so no real key is skipped); `Ok(None)` at the end.
pub fn map_next_key<K: Key>(map: BorrowedFd<'_>, key: Option<K>) -> Result<Option<K>> {
    let mut next = K::default();
    let current = key.unwrap_or_default();
    let key_ptr: *const K = if key.is_some() {
        &current
    } else {
        std::ptr::null()
    };
    let mut attr = elem_attr(map, key_ptr, ptr(&mut next as *mut K), 0);
    let ret = bpf(cmd::MAP_GET_NEXT_KEY, &mut attr, BASE);
    let found = key_found(ret, cmd::MAP_GET_NEXT_KEY, || {
        format!(
            "bpf(BPF_MAP_GET_NEXT_KEY, map fd {}, key {})",
            map.as_raw_fd(),
            key.map_or("NULL".to_string(), |k| format!("{k:#x}"))
        )
    })?;
    Ok(found.then_some(next))
}

/// Every (key, value) of a map with 8-byte or 4-byte keys and 4-byte
/// values, from the first key. A key deleted between next-key and lookup
/// is skipped.
pub fn map_entries<K: Key>(map: BorrowedFd<'_>) -> Result<Vec<(K, u32)>> {
    let mut out = Vec::new();
    let mut key = None;
    while let Some(k) = map_next_key(map, key)? {
        if let Some(v) = map_lookup(map, k)? {
            out.push((k, v));
        }
        key = Some(k);
    }
    Ok(out)
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

const LOG_START: usize = 64 * 1024;
const LOG_MAX: usize = 16 * 1024 * 1024;

/// `BPF_PROG_LOAD`. When the kernel refuses the program, the load is
/// retried with the verifier log on (growing the buffer while the log does
/// not fit) and the log ends up in the error.
///
/// A program with a `BPF_LD_MAP_VALUE` instruction needs Linux 5.2.
pub fn prog_load(prog_type: u32, insns: &[Insn], license: &str, name: &str) -> Result<OwnedFd> {
    let license = CString::new(license).map_err(|_| Error::invalid("license has a NUL byte"))?;
    let since = if insns
        .iter()
        .any(|i| i.code == 0x18 && i.src() == crate::insn::op::BPF_PSEUDO_MAP_VALUE)
    {
        Since(5, 2)
    } else {
        BASE
    };
    let attempt = |log: &mut [u8], level: u32| {
        let mut attr = ProgLoadAttr {
            prog_type,
            insn_cnt: insns.len() as u32,
            insns: ptr(insns.as_ptr()),
            license: ptr(license.as_ptr()),
            log_level: level,
            log_size: log.len() as u32,
            log_buf: if log.is_empty() {
                0
            } else {
                ptr(log.as_mut_ptr())
            },
            prog_name: obj_name(name),
            ..Default::default()
        };
        bpf(cmd::PROG_LOAD, &mut attr, since).map(fd_result)
    };
    let call = format!(
        "bpf(BPF_PROG_LOAD, type {prog_type}, {} instructions, name {name:?})",
        insns.len()
    );
    let errno = match memlock_retry(|| attempt(&mut [], 0)) {
        Ok(fd) => return Ok(fd),
        Err(e) => e,
    };
    load_with_log(attempt, &call, errno)
}

/// A failed load again with the verifier log on, in a buffer that grows
/// until the log fits: the error (`errno` of the first try unless this one
/// fails otherwise) then carries the log. Loaded this time: the fd.
fn load_with_log(
    attempt: impl Fn(&mut [u8], u32) -> std::result::Result<OwnedFd, i32>,
    call: &str,
    errno: i32,
) -> Result<OwnedFd> {
    let mut size = LOG_START;
    loop {
        let mut log = vec![0u8; size];
        match attempt(&mut log, 1) {
            // Loaded with the log on: a transient failure the first time.
            Ok(fd) => return Ok(fd),
            Err(libc::ENOSPC) if size < LOG_MAX => size *= 4,
            Err(e) => {
                let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                let text = String::from_utf8_lossy(&log[..end]);
                let text = text.trim_end();
                let err = failed(
                    cmd::PROG_LOAD,
                    call,
                    if e == libc::ENOSPC { errno } else { e },
                );
                return Err(if text.is_empty() {
                    err
                } else {
                    Error::new(err.errno(), format!("{err}; verifier log:\n{text}"))
                });
            }
        }
    }
}

#[repr(C)]
#[derive(Default)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

/// `BPF_PROG_ATTACH` of `prog` to the cgroup `target`; with `replace`,
/// `BPF_F_REPLACE` (Linux 5.6; `EINVAL` before) is added and that program
/// is replaced in one step.
pub fn prog_attach(
    target: BorrowedFd<'_>,
    prog: BorrowedFd<'_>,
    attach_type: u32,
    flags: u32,
    replace: Option<BorrowedFd<'_>>,
) -> Result<()> {
    let mut attr = ProgAttachAttr {
        target_fd: target.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type,
        attach_flags: flags | replace.map_or(0, |_| BPF_F_REPLACE),
        replace_bpf_fd: replace.map_or(0, |r| r.as_raw_fd() as u32),
    };
    let flags = attr.attach_flags;
    let since = if replace.is_some() { Since(5, 6) } else { BASE };
    bpf(cmd::PROG_ATTACH, &mut attr, since)
        .map(drop)
        .map_err(|e| {
            failed(
                cmd::PROG_ATTACH,
                format_args!(
                    "bpf(BPF_PROG_ATTACH, cgroup fd {}, prog fd {}, type {attach_type}, \
                 flags {flags:#x}, replace fd {})",
                    target.as_raw_fd(),
                    prog.as_raw_fd(),
                    replace.map_or(-1, |r| r.as_raw_fd())
                ),
                e,
            )
        })
}

/// `BPF_PROG_DETACH` of `prog` from the cgroup `target`.
pub fn prog_detach(target: BorrowedFd<'_>, prog: BorrowedFd<'_>, attach_type: u32) -> Result<()> {
    let mut attr = ProgAttachAttr {
        target_fd: target.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type,
        ..Default::default()
    };
    bpf(cmd::PROG_DETACH, &mut attr, BASE)
        .map(drop)
        .map_err(|e| {
            failed(
                cmd::PROG_DETACH,
                format_args!(
                    "bpf(BPF_PROG_DETACH, cgroup fd {}, prog fd {}, type {attach_type})",
                    target.as_raw_fd(),
                    prog.as_raw_fd()
                ),
                e,
            )
        })
}

#[repr(C)]
#[derive(Default)]
struct ProgQueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

/// What `BPF_PROG_QUERY` says of a cgroup's own programs of one attach type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attached {
    /// The cgroup's attach flags for the type (`BPF_F_ALLOW_*`), 0 when none.
    pub flags: u32,
    /// Program ids, in run order.
    pub ids: Vec<u32>,
}

/// `BPF_PROG_QUERY`: the programs attached to the cgroup `target` itself.
pub fn prog_query(target: BorrowedFd<'_>, attach_type: u32) -> Result<Attached> {
    query(target, attach_type, 0)
}

/// `BPF_F_QUERY_EFFECTIVE`: a query of the programs the kernel runs for
/// the cgroup, its ancestors' included.
pub const BPF_F_QUERY_EFFECTIVE: u32 = 1;

/// `BPF_PROG_QUERY` with `BPF_F_QUERY_EFFECTIVE`: the ids of every program
/// the kernel runs for a process in the cgroup `target`, in run order (its
/// own first, then its ancestors' that apply).
pub fn prog_query_effective(target: BorrowedFd<'_>, attach_type: u32) -> Result<Vec<u32>> {
    query(target, attach_type, BPF_F_QUERY_EFFECTIVE).map(|a| a.ids)
}

fn query(target: BorrowedFd<'_>, attach_type: u32, query_flags: u32) -> Result<Attached> {
    let mut ids: Vec<u32> = vec![0; 8];
    loop {
        let mut attr = ProgQueryAttr {
            target_fd: target.as_raw_fd() as u32,
            attach_type,
            query_flags,
            prog_ids: ptr(ids.as_mut_ptr()),
            prog_cnt: ids.len() as u32,
            ..Default::default()
        };
        match bpf(cmd::PROG_QUERY, &mut attr, BASE) {
            Ok(_) => {
                ids.truncate(attr.prog_cnt as usize);
                return Ok(Attached {
                    flags: attr.attach_flags,
                    ids,
                });
            }
            Err(libc::ENOSPC) if ids.len() < 1 << 16 => ids = vec![0; ids.len() * 8],
            Err(e) => {
                return Err(failed(
                    cmd::PROG_QUERY,
                    format_args!(
                        "bpf(BPF_PROG_QUERY, cgroup fd {}, type {attach_type})",
                        target.as_raw_fd()
                    ),
                    e,
                ))
            }
        }
    }
}

#[repr(C)]
#[derive(Default)]
struct GetFdByIdAttr {
    id: u32,
    next_id: u32,
    open_flags: u32,
}

fn get_fd_by_id(command: i32, what: &str, id: u32) -> Result<OwnedFd> {
    let mut attr = GetFdByIdAttr {
        id,
        ..Default::default()
    };
    bpf(command, &mut attr, BASE).map(fd_result).map_err(|e| {
        failed(
            command,
            format_args!("bpf(BPF_{what}_GET_FD_BY_ID, id {id})"),
            e,
        )
    })
}

/// `BPF_PROG_GET_FD_BY_ID`.
pub fn prog_get_fd_by_id(id: u32) -> Result<OwnedFd> {
    get_fd_by_id(cmd::PROG_GET_FD_BY_ID, "PROG", id)
}

/// `BPF_MAP_GET_FD_BY_ID`.
pub fn map_get_fd_by_id(id: u32) -> Result<OwnedFd> {
    get_fd_by_id(cmd::MAP_GET_FD_BY_ID, "MAP", id)
}

#[repr(C)]
#[derive(Default)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

fn obj_info<T>(fd: BorrowedFd<'_>, info: &mut T) -> Result<()> {
    let mut attr = InfoAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: std::mem::size_of::<T>() as u32,
        info: ptr(info as *mut T),
    };
    bpf(cmd::OBJ_GET_INFO_BY_FD, &mut attr, BASE)
        .map(drop)
        .map_err(|e| {
            failed(
                cmd::OBJ_GET_INFO_BY_FD,
                format_args!("bpf(BPF_OBJ_GET_INFO_BY_FD, fd {})", fd.as_raw_fd()),
                e,
            )
        })
}

/// The leading fields of `struct bpf_prog_info`.
#[repr(C)]
#[derive(Default)]
struct RawProgInfo {
    prog_type: u32,
    id: u32,
    tag: [u8; 8],
    jited_prog_len: u32,
    xlated_prog_len: u32,
    jited_prog_insns: u64,
    xlated_prog_insns: u64,
    load_time: u64,
    created_by_uid: u32,
    nr_map_ids: u32,
    map_ids: u64,
    name: [u8; 16],
    ifindex: u32,
    gpl_compatible: u32,
    netns_dev: u64,
    netns_ino: u64,
    nr_jited_ksyms: u32,
    nr_jited_func_lens: u32,
    jited_ksyms: u64,
    jited_func_lens: u64,
    btf_id: u32,
    func_info_rec_size: u32,
    func_info: u64,
    nr_func_info: u32,
    nr_line_info: u32,
    line_info: u64,
    jited_line_info: u64,
    nr_jited_line_info: u32,
    line_info_rec_size: u32,
    jited_line_info_rec_size: u32,
    nr_prog_tags: u32,
    prog_tags: u64,
    run_time_ns: u64,
    run_cnt: u64,
}

/// What the kernel tells of a loaded program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgInfo {
    /// `BPF_PROG_TYPE_*`.
    pub prog_type: u32,
    /// Program id.
    pub id: u32,
    /// The kernel's tag: a hash of the instructions with map fds zeroed.
    pub tag: [u8; 8],
    /// The name given at load time.
    pub name: String,
    /// Ids of the maps the program uses.
    pub map_ids: Vec<u32>,
    /// Time spent in the program, counted while `kernel.bpf_stats_enabled` is 1.
    pub run_time_ns: u64,
    /// Runs counted while `kernel.bpf_stats_enabled` is 1.
    pub run_cnt: u64,
}

/// `BPF_OBJ_GET_INFO_BY_FD` on a program fd.
pub fn prog_info(prog: BorrowedFd<'_>) -> Result<ProgInfo> {
    let mut map_ids = vec![0u32; 4];
    loop {
        let mut info = RawProgInfo {
            nr_map_ids: map_ids.len() as u32,
            map_ids: ptr(map_ids.as_mut_ptr()),
            ..Default::default()
        };
        obj_info(prog, &mut info)?;
        let n = info.nr_map_ids as usize;
        if n > map_ids.len() {
            map_ids = vec![0; n];
            continue;
        }
        map_ids.truncate(n);
        let end = info.name.iter().position(|&b| b == 0).unwrap_or(16);
        return Ok(ProgInfo {
            prog_type: info.prog_type,
            id: info.id,
            tag: info.tag,
            name: String::from_utf8_lossy(&info.name[..end]).into_owned(),
            map_ids,
            run_time_ns: info.run_time_ns,
            run_cnt: info.run_cnt,
        });
    }
}

/// The instructions of a program as the kernel runs them
/// (`xlated_prog_insns`: after the verifier's rewrites, with map references
/// as map ids); None when the kernel withholds them (without
/// `CAP_BPF`/`CAP_SYS_ADMIN`, or a constant-blinded program when raw dumps
/// are not allowed: `kernel.kptr_restrict`).
pub fn prog_xlated(prog: BorrowedFd<'_>) -> Result<Option<Vec<Insn>>> {
    let mut info = RawProgInfo::default();
    obj_info(prog, &mut info)?;
    let len = info.xlated_prog_len as usize;
    if len == 0 {
        return Ok(None);
    }
    let mut buf = vec![0u8; len];
    let mut info = RawProgInfo {
        xlated_prog_len: len as u32,
        xlated_prog_insns: ptr(buf.as_mut_ptr()),
        ..Default::default()
    };
    obj_info(prog, &mut info)?;
    if info.xlated_prog_insns == 0 || info.xlated_prog_len as usize != len {
        return Ok(None);
    }
    Ok(Some(
        buf.chunks_exact(8)
            .map(|b| {
                let regs = b[1];
                let off = i16::from_ne_bytes([b[2], b[3]]);
                let imm = i32::from_ne_bytes([b[4], b[5], b[6], b[7]]);
                Insn {
                    code: b[0],
                    regs,
                    off,
                    imm,
                }
            })
            .collect(),
    ))
}

/// The leading fields of `struct bpf_map_info`.
#[repr(C)]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MapInfo {
    /// `BPF_MAP_TYPE_*`.
    pub map_type: u32,
    /// Map id.
    pub id: u32,
    /// Key size in bytes.
    pub key_size: u32,
    /// Value size in bytes.
    pub value_size: u32,
    /// Capacity.
    pub max_entries: u32,
    /// `BPF_F_*` map flags.
    pub map_flags: u32,
}

/// `BPF_OBJ_GET_INFO_BY_FD` on a map fd (check [`fd_kind`] first: the
/// kernel fills in whatever info matches the fd's kind).
pub fn map_info(map: BorrowedFd<'_>) -> Result<MapInfo> {
    let mut info = MapInfo::default();
    obj_info(map, &mut info)?;
    Ok(info)
}

#[cfg(feature = "testing")]
/// `BPF_ENABLE_STATS` with `BPF_STATS_RUN_TIME`: the kernel counts every
/// program's `run_time_ns` and `run_cnt` (see [`prog_info`]) while the
/// returned fd is open, and stops counting when the last such fd is closed
/// (unless `kernel.bpf_stats_enabled` is set). Nothing global is left
/// changed: the sysctl is neither read nor written. Needs `CAP_SYS_ADMIN`.
pub fn enable_stats() -> Result<OwnedFd> {
    /// `BPF_ENABLE_STATS`.
    const ENABLE_STATS: i32 = 32;
    /// `BPF_STATS_RUN_TIME`.
    const BPF_STATS_RUN_TIME: u32 = 0;
    /// `union bpf_attr`'s `enable_stats` member.
    #[repr(C)]
    struct EnableStatsAttr {
        stats_type: u32,
    }
    let mut attr = EnableStatsAttr {
        stats_type: BPF_STATS_RUN_TIME,
    };
    bpf(ENABLE_STATS, &mut attr, Since(5, 8))
        .map(fd_result)
        .map_err(|e| Error::sys("bpf(BPF_ENABLE_STATS, BPF_STATS_RUN_TIME)", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    /// Offsets of `linux/bpf.h` (stable UAPI).
    #[test]
    fn attr_and_info_layouts_match_the_kernel() {
        assert_eq!(offset_of!(MapCreateAttr, map_name), 28);
        assert_eq!(offset_of!(MapCreateAttr, map_ifindex), 44);
        assert_eq!(size_of::<MapElemAttr>(), 32);
        assert_eq!(offset_of!(ProgLoadAttr, prog_name), 48);
        assert_eq!(offset_of!(ProgLoadAttr, expected_attach_type), 68);
        assert_eq!(size_of::<ProgAttachAttr>(), 20);
        assert_eq!(offset_of!(ProgQueryAttr, prog_cnt), 24);
        assert_eq!(offset_of!(RawProgInfo, name), 64);
        assert_eq!(offset_of!(RawProgInfo, run_time_ns), 192);
        assert_eq!(offset_of!(RawProgInfo, run_cnt), 200);
        assert_eq!(offset_of!(MapInfo, map_flags), 20);
    }

    /// Linux 6.17 to 7.1 write 8 bytes at offset 56 of the attr on every
    /// `BPF_PROG_QUERY`: emulated, that write lands in the layer's own
    /// buffer, and memory around the 32-byte query attr stays as it was.
    #[cfg(feature = "testing")]
    #[test]
    fn prog_query_leaves_memory_past_its_attr_alone_on_6_17() {
        use crate::sys::hook;
        #[repr(C)]
        struct Guarded {
            attr: ProgQueryAttr,
            guard: [u8; 64],
        }
        let cgroup = std::fs::File::open("/sys/fs/cgroup").unwrap();
        let mut ids = [0u32; 64];
        let mut g = Guarded {
            attr: ProgQueryAttr {
                target_fd: cgroup.as_raw_fd() as u32,
                attach_type: BPF_CGROUP_DEVICE,
                prog_ids: ptr(ids.as_mut_ptr()),
                prog_cnt: ids.len() as u32,
                ..Default::default()
            },
            guard: [0xa5; 64],
        };
        hook::emulate_query_revision(true);
        let ret = bpf(cmd::PROG_QUERY, &mut g.attr, BASE);
        // The emulation itself, on memory passed directly: the write lands
        // 24 bytes past the 32-byte attr, in the guard.
        let mut direct = Guarded {
            attr: ProgQueryAttr::default(),
            guard: [0xa5; 64],
        };
        // SAFETY: `direct` is 96 bytes of this function's.
        unsafe { hook::wrote_back(cmd::PROG_QUERY, &mut direct as *mut Guarded as *mut u8) };
        hook::emulate_query_revision(false);
        assert_eq!(g.guard, [0xa5; 64], "bpf(2) wrote past the attr");
        assert!(g.attr.prog_cnt <= ids.len() as u32, "{ret:?}");
        let at = hook::QUERY_REVISION_OFFSET - size_of::<ProgQueryAttr>();
        assert_eq!(
            direct.guard[at..at + 8],
            hook::QUERY_REVISION_MARK.to_ne_bytes(),
            "the emulation writes at offset 56"
        );
        assert!(size_of::<ProgQueryAttr>() + 8 <= hook::QUERY_REVISION_OFFSET);
    }
}
