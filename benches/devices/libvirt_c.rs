// SPDX-License-Identifier: LGPL-2.1-or-later
//! libvirt's C sequence, replayed call for call: the `virBPF*` wrappers of
//! `src/util/virbpf.c` and the `virCgroupV2Devices*` functions of
//! `src/util/vircgroupv2devices.c` and `src/util/vircgroupv2.c` (libvirt
//! 9.0.0 to 12.x), with the attrs they pass.
//!
//! Every call zeroes a whole `union bpf_attr` (`memset(&attr, 0,
//! sizeof(attr))`), sets the fields libvirt sets and passes
//! `sizeof(attr)`: 144 bytes, the size in the kernel headers of Debian 12
//! (linux-libc-dev 6.1) that libvirt 9.0.0 is built with there. A program
//! load (`virBPFLoadProg`) always passes `log_level = 1` and a freshly
//! zeroed 256 KiB `log_buf` (`g_new0(char, LOG_BUF_SIZE)`), license "GPL",
//! no name. These calls go straight to bpf(2), not through the library,
//! so they are counted here (`calls`) and not by `sys::hook`.

use crate::Res;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use vircgroup_v2_devices::insn::Insn;
use vircgroup_v2_devices::program::libvirt_program;
use vircgroup_v2_devices::sys::{cmd, hook, BPF_CGROUP_DEVICE, BPF_MAP_TYPE_HASH};

/// `sizeof(union bpf_attr)` in linux-libc-dev 6.1 (Debian 12).
pub(crate) const ATTR_SIZE: usize = 144;
/// `LOG_BUF_SIZE` of `virBPFLoadProg`.
pub(crate) const LOG_BUF_SIZE: usize = 256 * 1024;
/// `sizeof(struct bpf_prog_info)` and `sizeof(struct bpf_map_info)` in the
/// same headers.
const PROG_INFO_SIZE: usize = 232;
const MAP_INFO_SIZE: usize = 88;
/// `VIR_CGROUP_V2_INITIAL_BPF_MAP_SIZE`.
pub(crate) const INITIAL_MAP_SIZE: u32 = 64;
/// `MAX_PROG_IDS` of `virCgroupV2DevicesDetectProg`.
const MAX_PROG_IDS: usize = 10;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;

static CALLS: [AtomicU64; hook::COMMANDS] = [const { AtomicU64::new(0) }; hook::COMMANDS];

/// bpf(2) calls made by the replay so far, per command.
pub(crate) fn calls() -> [u64; hook::COMMANDS] {
    let mut out = [0; hook::COMMANDS];
    for (o, c) in out.iter_mut().zip(&CALLS) {
        *o = c.load(Ordering::Relaxed);
    }
    out
}

/// A zeroed `union bpf_attr`, 8-byte aligned as the C union is.
struct Attr([u64; ATTR_SIZE / 8]);

impl Attr {
    fn new() -> Attr {
        Attr([0; ATTR_SIZE / 8])
    }
    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: the array is ATTR_SIZE bytes of plain integers.
        unsafe { std::slice::from_raw_parts_mut(self.0.as_mut_ptr() as *mut u8, ATTR_SIZE) }
    }
    fn u32(&mut self, off: usize, v: u32) {
        self.bytes()[off..off + 4].copy_from_slice(&v.to_ne_bytes());
    }
    fn u64(&mut self, off: usize, v: u64) {
        self.bytes()[off..off + 8].copy_from_slice(&v.to_ne_bytes());
    }
    fn get_u32(&mut self, off: usize) -> u32 {
        u32::from_ne_bytes(self.bytes()[off..off + 4].try_into().expect("4 bytes"))
    }
    /// `syscall(SYS_bpf, cmd, &attr, sizeof(attr))`: the result or errno.
    fn call(&mut self, command: i32) -> Result<i64, i32> {
        CALLS[command as usize].fetch_add(1, Ordering::Relaxed);
        // SAFETY: ATTR_SIZE bytes of live memory laid out as the kernel's
        // union for `command`; every pointer in it is to memory that
        // outlives the call.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                command,
                self.0.as_mut_ptr() as *mut libc::c_void,
                ATTR_SIZE as libc::c_uint,
            )
        };
        if ret < 0 {
            Err(std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO))
        } else {
            Ok(ret)
        }
    }
}

fn fd(ret: i64) -> OwnedFd {
    // SAFETY: the command returned a new fd that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(ret as RawFd) }
}

fn err(what: &str, errno: i32) -> Box<dyn std::error::Error> {
    format!("{what}: {}", std::io::Error::from_raw_os_error(errno)).into()
}

fn p<T>(x: *const T) -> u64 {
    x as usize as u64
}

/// `virBPFCreateMap`.
pub(crate) fn create_map(map_type: u32, key: u32, value: u32, max: u32) -> Res<OwnedFd> {
    let mut a = Attr::new();
    a.u32(0, map_type);
    a.u32(4, key);
    a.u32(8, value);
    a.u32(12, max);
    a.call(cmd::MAP_CREATE)
        .map(fd)
        .map_err(|e| err("virBPFCreateMap", e))
}

/// `virBPFLoadProg`: the verifier log always on, into a fresh zeroed
/// 256 KiB buffer.
pub(crate) fn load_prog(insns: &[Insn]) -> Res<OwnedFd> {
    let logbuf = vec![0u8; LOG_BUF_SIZE];
    let license = CString::new("GPL")?;
    let mut a = Attr::new();
    a.u32(0, BPF_PROG_TYPE_CGROUP_DEVICE);
    a.u32(4, insns.len() as u32);
    a.u64(8, p(insns.as_ptr()));
    a.u64(16, p(license.as_ptr()));
    a.u32(24, 1);
    a.u32(28, LOG_BUF_SIZE as u32);
    a.u64(32, p(logbuf.as_ptr()));
    let r = a.call(cmd::PROG_LOAD);
    drop(logbuf);
    r.map(fd).map_err(|e| err("virBPFLoadProg", e))
}

/// `virBPFAttachProg` (no flags).
fn attach_prog(prog: RawFd, target: RawFd) -> Res<()> {
    let mut a = Attr::new();
    a.u32(0, target as u32);
    a.u32(4, prog as u32);
    a.u32(8, BPF_CGROUP_DEVICE);
    a.call(cmd::PROG_ATTACH)
        .map(drop)
        .map_err(|e| err("virBPFAttachProg", e))
}

/// `virBPFQueryProg`: the number of programs.
fn query_prog(target: RawFd, ids: &mut [u32]) -> Res<u32> {
    let mut a = Attr::new();
    a.u32(0, target as u32);
    a.u32(4, BPF_CGROUP_DEVICE);
    a.u64(16, p(ids.as_mut_ptr()));
    a.u32(24, ids.len() as u32);
    a.call(cmd::PROG_QUERY)
        .map_err(|e| err("virBPFQueryProg", e))?;
    Ok(a.get_u32(24))
}

fn get_by_id(command: i32, id: u32, what: &str) -> Res<OwnedFd> {
    let mut a = Attr::new();
    a.u32(0, id);
    a.call(command).map(fd).map_err(|e| err(what, e))
}

fn obj_info(fd: RawFd, info: &mut [u64]) -> Res<()> {
    let mut a = Attr::new();
    a.u32(0, fd as u32);
    a.u32(4, (info.len() * 8) as u32);
    a.u64(8, p(info.as_mut_ptr()));
    a.call(cmd::OBJ_GET_INFO_BY_FD)
        .map(drop)
        .map_err(|e| err("virBPFGetInfo", e))
}

/// `virBPFGetProgInfo` with `mapIDs`: the info, then again with room for
/// the map ids. Returns the map ids.
fn prog_info_map_ids(prog: RawFd) -> Res<Vec<u32>> {
    let mut info = vec![0u64; PROG_INFO_SIZE / 8];
    obj_info(prog, &mut info)?;
    // nr_map_ids: offset 52 (u32), map_ids: offset 56 (u64).
    let nr = (info[6] >> 32) as u32;
    if nr == 0 {
        return Ok(Vec::new());
    }
    let mut ids = vec![0u32; nr as usize];
    info.iter_mut().for_each(|w| *w = 0);
    info[6] = (nr as u64) << 32;
    info[7] = p(ids.as_mut_ptr());
    obj_info(prog, &mut info)?;
    Ok(ids)
}

/// `virBPFGetMapInfo`: `max_entries`.
fn map_max(map: RawFd) -> Res<u32> {
    let mut info = vec![0u64; MAP_INFO_SIZE / 8];
    obj_info(map, &mut info)?;
    Ok(info[2] as u32)
}

fn elem(command: i32, map: RawFd, key: u64, value: u64) -> Result<i64, i32> {
    let mut a = Attr::new();
    a.u32(0, map as u32);
    a.u64(8, key);
    a.u64(16, value);
    a.call(command)
}

/// `virBPFLookupElem` (`value` 0 is libvirt's `NULL`).
fn lookup(map: RawFd, key: &u64, value: Option<&mut u32>) -> Result<i64, i32> {
    let v = value.map_or(0, |v| p(v as *const u32));
    elem(cmd::MAP_LOOKUP_ELEM, map, p(key), v)
}

/// `virBPFUpdateElem` (flags 0: `BPF_ANY`).
pub(crate) fn update(map: RawFd, key: u64, value: u32) -> Res<()> {
    elem(cmd::MAP_UPDATE_ELEM, map, p(&key), p(&value))
        .map(drop)
        .map_err(|e| err("virBPFUpdateElem", e))
}

/// `virBPFGetNextElem`.
fn next_key(map: RawFd, prev: &u64, next: &mut u64) -> Result<i64, i32> {
    elem(cmd::MAP_GET_NEXT_KEY, map, p(prev), p(next as *const u64))
}

/// `virCgroupV2DevicesLoadProg`.
pub(crate) fn load_libvirt_program(map: RawFd) -> Res<OwnedFd> {
    load_prog(&libvirt_program(map))
}

/// `open(path, O_RDONLY)`, as libvirt opens a cgroup.
fn open_dir(path: &std::path::Path) -> Res<OwnedFd> {
    Ok(std::fs::File::open(path)
        .map_err(|e| format!("unable to open '{}': {e}", path.display()))?
        .into())
}

/// A cgroup's `group->unified.devices`, as libvirt keeps it.
pub(crate) struct Group {
    path: std::path::PathBuf,
    pub(crate) progfd: Option<OwnedFd>,
    pub(crate) mapfd: Option<OwnedFd>,
    pub(crate) count: usize,
    pub(crate) max: usize,
}

impl Group {
    pub(crate) fn new(path: &std::path::Path) -> Group {
        Group {
            path: path.to_path_buf(),
            progfd: None,
            mapfd: None,
            count: 0,
            max: 0,
        }
    }

    fn has_prog(&self) -> bool {
        self.progfd.is_some() && self.mapfd.is_some()
    }

    /// `virCgroupV2DevicesDetectProg`: PROG_QUERY, then the program by id,
    /// its info (twice: then with room for the map ids), its map by id,
    /// the map's info, and a walk of the map's keys (counted).
    pub(crate) fn detect_prog(&mut self) -> Res<()> {
        if self.has_prog() {
            return Ok(());
        }
        let cgroupfd = open_dir(&self.path)?;
        let mut ids = [0u32; MAX_PROG_IDS];
        if query_prog(cgroupfd.as_raw_fd(), &mut ids)? == 0 {
            return Ok(());
        }
        let progfd = get_by_id(cmd::PROG_GET_FD_BY_ID, ids[0], "virBPFGetProg")?;
        let map_ids = prog_info_map_ids(progfd.as_raw_fd())?;
        let &[map_id, ..] = &map_ids[..] else {
            return Err("no map for cgroup BPF prog".into());
        };
        let mapfd = get_by_id(cmd::MAP_GET_FD_BY_ID, map_id, "virBPFGetMap")?;
        let max = map_max(mapfd.as_raw_fd())?;
        // virCgroupV2DevicesCountMapEntries: from key 0, until an error.
        let (mut key, mut prev, mut n) = (0u64, 0u64, 0usize);
        while next_key(mapfd.as_raw_fd(), &prev, &mut key).is_ok() {
            n += 1;
            prev = key;
        }
        self.progfd = Some(progfd);
        self.mapfd = Some(mapfd);
        self.max = max as usize;
        self.count = n;
        Ok(())
    }

    /// `virCgroupV2DevicesAttachProg`: load, open the cgroup, attach (no
    /// flags: it replaces the program there), keep the new fds.
    fn attach_prog(&mut self, mapfd: OwnedFd, max: usize) -> Res<()> {
        let progfd = load_libvirt_program(mapfd.as_raw_fd())?;
        let cgroupfd = open_dir(&self.path)?;
        attach_prog(progfd.as_raw_fd(), cgroupfd.as_raw_fd())?;
        self.progfd = Some(progfd);
        self.mapfd = Some(mapfd);
        self.max = max;
        Ok(())
    }

    /// `virCgroupV2DevicesCreateProg`.
    fn create_prog(&mut self) -> Res<()> {
        if self.has_prog() {
            return Ok(());
        }
        let map = create_map(BPF_MAP_TYPE_HASH, 8, 4, INITIAL_MAP_SIZE)?;
        self.attach_prog(map, INITIAL_MAP_SIZE as usize)
    }

    /// `virCgroupV2DevicesReallocMap` and the attach of
    /// `virCgroupV2DevicesPrepareProg`.
    fn realloc(&mut self, max: usize) -> Res<()> {
        let old = self.mapfd.as_ref().ok_or("no map")?.as_raw_fd();
        let new = create_map(BPF_MAP_TYPE_HASH, 8, 4, max as u32)?;
        let (mut key, mut prev) = (0u64, 0u64);
        while next_key(old, &prev, &mut key).is_ok() {
            let mut val = 0u32;
            lookup(old, &key, Some(&mut val)).map_err(|e| err("lookup in old map", e))?;
            update(new.as_raw_fd(), key, val)?;
            prev = key;
        }
        self.attach_prog(new, max)
    }

    /// `virCgroupV2DevicesPrepareProg`.
    fn prepare_prog(&mut self) -> Res<()> {
        self.detect_prog()?;
        self.create_prog()?;
        if self.count >= self.max {
            self.realloc(self.max * 2)?;
        }
        Ok(())
    }

    /// `virCgroupV2DenyAllDevices`: detect, then create.
    pub(crate) fn deny_all(&mut self) -> Res<()> {
        self.detect_prog()?;
        self.create_prog()
    }

    /// `virCgroupV2AllowDevice`: prepare, a lookup with a `NULL` value (its
    /// error says whether the key is new), the update.
    pub(crate) fn allow(&mut self, key: u64, val: u32) -> Res<()> {
        self.prepare_prog()?;
        let map = self.mapfd.as_ref().ok_or("no map")?.as_raw_fd();
        let rc = lookup(map, &key, None);
        update(map, key, val)?;
        if rc.is_err() {
            self.count += 1;
        }
        Ok(())
    }
}
