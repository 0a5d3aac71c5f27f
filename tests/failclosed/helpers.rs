// SPDX-License-Identifier: LGPL-2.1-or-later
//! What the scenarios share: the fd/RSS lock, the per-thread heap
//! counter (the global allocator), the C ABI called as C does, the kernel's
//! view of a cgroup read without the library's state, the probed device
//! nodes and the assertion on what the kernel enforces.

use crate::common::*;
use ::vircgroup_v2_devices::api;
use ::vircgroup_v2_devices::capi::*;
use ::vircgroup_v2_devices::sys;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::ffi::{CStr, CString};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// The tests that count this process's fds or its RSS hold this lock
/// exclusively; the others share it, so nothing else in this process opens
/// or closes an fd while they count.
pub(crate) static FDS: RwLock<()> = RwLock::new(());

pub(crate) fn shared() -> RwLockReadGuard<'static, ()> {
    FDS.read().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn exclusive() -> RwLockWriteGuard<'static, ()> {
    FDS.write().unwrap_or_else(PoisonError::into_inner)
}

/// The system allocator, counting per thread the bytes it allocated and
/// has not freed, so that a leak of the library (which works in the
/// calling thread) shows to the byte where the RSS only shows pages, and
/// other threads (the test harness) do not count.
struct Counting;

thread_local! {
    // No destructor: usable from the allocator at any time.
    static HEAP: Cell<isize> = const { Cell::new(0) };
}

fn count(bytes: isize) {
    HEAP.with(|h| h.set(h.get() + bytes));
}

// SAFETY: every call is passed on to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        // SAFETY: the caller's contract is System's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize));
        // SAFETY: the caller's contract is System's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes this thread allocated and has not freed.
pub(crate) fn heap_bytes() -> isize {
    HEAP.with(Cell::get)
}

pub(crate) fn c(path: &str) -> CString {
    CString::new(path).unwrap()
}

pub(crate) fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

pub(crate) fn get_state(path: &CStr) -> vircgroup_v2_devices {
    let mut out = vircgroup_v2_devices {
        mapfd: -2,
        progfd: -2,
        count: -2,
        max: -2,
    };
    // SAFETY: valid C string and out pointer.
    let ret = unsafe { vircgroup_v2_devices_get_state(path.as_ptr(), &mut out) };
    assert_eq!(ret, 0, "get_state: {}", last_error());
    out
}

pub(crate) fn allow_c(path: &CStr, ty: u8, major: i32, minor: i32, perms: i32) -> i32 {
    // SAFETY: valid C string.
    unsafe { vircgroup_v2_allow_device(path.as_ptr(), ty as libc::c_char, major, minor, perms) }
}

pub(crate) fn deny_c(path: &CStr, ty: u8, major: i32, minor: i32, perms: i32) -> i32 {
    // SAFETY: valid C string.
    unsafe { vircgroup_v2_deny_device(path.as_ptr(), ty as libc::c_char, major, minor, perms) }
}

/// `bpf_cmd` values by the name the error messages use.
pub(crate) fn cmd_name(cmd: i32) -> &'static str {
    use sys::cmd::*;
    match cmd {
        MAP_CREATE => "BPF_MAP_CREATE",
        MAP_LOOKUP_ELEM => "BPF_MAP_LOOKUP_ELEM",
        MAP_UPDATE_ELEM => "BPF_MAP_UPDATE_ELEM",
        MAP_DELETE_ELEM => "BPF_MAP_DELETE_ELEM",
        MAP_GET_NEXT_KEY => "BPF_MAP_GET_NEXT_KEY",
        PROG_LOAD => "BPF_PROG_LOAD",
        PROG_ATTACH => "BPF_PROG_ATTACH",
        PROG_DETACH => "BPF_PROG_DETACH",
        PROG_GET_FD_BY_ID => "BPF_PROG_GET_FD_BY_ID",
        MAP_GET_FD_BY_ID => "BPF_MAP_GET_FD_BY_ID",
        OBJ_GET_INFO_BY_FD => "BPF_OBJ_GET_INFO_BY_FD",
        PROG_QUERY => "BPF_PROG_QUERY",
        MAP_LOOKUP_BATCH => "BPF_MAP_LOOKUP_BATCH",
        MAP_UPDATE_BATCH => "BPF_MAP_UPDATE_BATCH",
        _ => panic!("bpf command {cmd} has no name here"),
    }
}

/// What the kernel holds for a cgroup, read without the library's state:
/// the device programs attached, and the rules of the one the library
/// recognises (whether it is libvirt's, and its rules, converted), as
/// `inspect` reads them.
pub(crate) type KernelView = (Vec<u32>, Option<(bool, BTreeMap<u64, u32>)>);

pub(crate) fn kernel_view(path: &str) -> KernelView {
    let ids = ::vircgroup_v2_devices::cgroup::Cgroup::open(path)
        .and_then(|c| c.attached())
        .expect("query")
        .ids;
    let i = api::inspect(path).expect("inspect");
    let rules = i
        .rules
        .map(|(_, entries)| (i.libvirt, entries.into_iter().collect()));
    (ids, rules)
}

/// Device nodes the scenarios probe (no driver behind most: an allowed
/// open gives ENXIO, a denied one EPERM).
pub(crate) struct Devs {
    pub(crate) nodes: Nodes,
    /// c 1:3 (/dev/null's numbers: opens for real).
    pub(crate) null: String,
    /// c 1:5 (/dev/zero's numbers).
    pub(crate) zero: String,
    /// c 136:5 (a pty's numbers).
    pub(crate) pts: String,
}

impl Devs {
    pub(crate) fn new() -> Devs {
        let nodes = Nodes::new();
        Devs {
            null: nodes.node("null", 'c', 1, 3),
            zero: nodes.node("zero", 'c', 1, 5),
            pts: nodes.node("pts5", 'c', 136, 5),
            nodes,
        }
    }
}

/// Probes `cases` (access, allowed) in the cgroup at once and asserts the
/// kernel's answers.
pub(crate) fn assert_enforced(cg: &Scratch, cases: &[(String, bool)], what: &str) {
    let accesses: Vec<String> = cases.iter().map(|c| c.0.clone()).collect();
    let results = cg.probe(&accesses);
    for ((access, allowed), result) in cases.iter().zip(&results) {
        assert_eq!(
            result != "EPERM",
            *allowed,
            "{what}: {access}: kernel said {result}, expected {}",
            if *allowed { "allowed" } else { "EPERM" }
        );
    }
}
