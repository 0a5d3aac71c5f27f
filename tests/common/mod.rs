// SPDX-License-Identifier: LGPL-2.1-or-later
//! Shared pieces of the privileged tests: the cgroup2 mount, scratch
//! cgroups that clean up after themselves, device nodes, and the probe.
#![allow(dead_code)]

pub mod cases;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use vircgroup_v2_devices::api;
use vircgroup_v2_devices::cgroup::cgroup2_mount;
use vircgroup_v2_devices::rules::Rule;

/// The cgroup2 mount when the test can run (root, cgroup2 mounted); else
/// None after printing why, or a panic under CI=true, where a privileged
/// test that cannot run is a failure.
pub fn privileged() -> Option<PathBuf> {
    let reason = // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        "not running as root"
    } else if let Some(mount) = cgroup2_mount() {
        return Some(mount);
    } else {
        "no cgroup2 filesystem mounted"
    };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("privileged test cannot run under CI=true: {reason}");
    }
    eprintln!("SKIPPED: {reason}");
    None
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{}-{}-{nanos:x}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// A cgroup created for one test under the cgroup2 mount; on drop the
/// library forgets it and it is removed, whether the test passed or not.
pub struct Scratch {
    pub path: PathBuf,
}

impl Scratch {
    pub fn new(mount: &Path) -> Scratch {
        let path = mount.join(unique("vcg2-test"));
        std::fs::create_dir(&path).expect("create scratch cgroup");
        Scratch { path }
    }

    /// A scratch cgroup whose name starts with `prefix`, any bytes the
    /// kernel takes (not UTF-8, a newline).
    pub fn named(mount: &Path, prefix: &[u8]) -> Scratch {
        use std::os::unix::ffi::OsStrExt;
        let mut name = prefix.to_vec();
        name.extend_from_slice(unique("").as_bytes());
        let path = mount.join(std::ffi::OsStr::from_bytes(&name));
        std::fs::create_dir(&path).expect("create scratch cgroup");
        Scratch { path }
    }

    pub fn p(&self) -> &str {
        self.path.to_str().unwrap()
    }

    /// Runs the probe in this cgroup: one result per access (`ok`,
    /// `EPERM`, `ENXIO`...).
    pub fn probe(&self, accesses: &[String]) -> Vec<String> {
        cases::probe_in(&[], &self.path, accesses)
    }

    /// Whether `access` (as vcg2-probe takes it) is allowed: EPERM is a
    /// denial; success or any other errno (ENXIO: no driver) got past the
    /// cgroup.
    pub fn allowed(&self, access: &str) -> bool {
        self.probe(&[access.to_string()])[0] != "EPERM"
    }

    pub fn list(&self) -> String {
        api::list(&self.path).expect("list")
    }

    pub fn state(&self) -> api::State {
        api::state(&self.path).expect("state")
    }

    /// Ids of the device programs attached to this cgroup.
    pub fn attached(&self) -> Vec<u32> {
        vircgroup_v2_devices::cgroup::Cgroup::open(&self.path)
            .and_then(|c| c.attached())
            .expect("query")
            .ids
    }

    /// Probes every access at once; asserts the kernel's answer and, where
    /// a rule is given, that `check` answers the same.
    pub fn expect(&self, cases: &[(String, Option<Rule>, bool)]) {
        let accesses: Vec<String> = cases.iter().map(|c| c.0.clone()).collect();
        let results = self.probe(&accesses);
        for ((access, rule, allowed), result) in cases.iter().zip(&results) {
            assert_eq!(
                result != "EPERM",
                *allowed,
                "{access}: kernel said {result}, expected {}; rules:\n{}",
                if *allowed { "allowed" } else { "EPERM" },
                self.list()
            );
            if let Some(rule) = rule {
                assert_eq!(
                    api::check(&self.path, rule).expect("check"),
                    *allowed,
                    "check({rule}) disagrees with the kernel on {access}"
                );
            }
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        use std::os::unix::fs::MetadataExt;
        let id = std::fs::metadata(&self.path).map(|m| (m.dev(), m.ino()));
        let _ = api::remove_prog(&self.path);
        remove_cgroup(&self.path);
        // On a kernel without cgroup.kill (or emulating one), other
        // processes (the tool, attackers) may have made the cgroup's lock
        // file without forgetting it.
        if let Ok((dev, ino)) = id {
            let _ =
                std::fs::remove_file(format!("/run/vircgroup-v2-devices/cgroup-{dev}-{ino}.lock"));
        }
    }
}

/// A cgroup with the library's program, changed in place once, so that
/// the process holds its beacon (the one fd the library holds per process
/// from its first in-place change of a table for as long as it holds any
/// cgroup's state): tests that count fds take their baseline with one of
/// these alive.
pub fn hold_beacon(mount: &Path) -> Scratch {
    use vircgroup_v2_devices::rules::RW;
    let s = Scratch::new(mount);
    api::deny_all(&s.path).expect("deny_all");
    api::allow(&s.path, &rule(b'c', 1, 3, RW)).expect("allow");
    api::allow(&s.path, &rule(b'c', 1, 5, RW)).expect("allow in place");
    s
}

/// Becomes `nobody` (65534), which drops every capability: for a test's
/// own child process (the privileges are gone for good).
pub fn become_nobody() {
    // SAFETY: plain syscalls on this process's credentials (glibc applies
    // them to every thread).
    unsafe {
        assert_eq!(libc::setgroups(0, std::ptr::null()), 0);
        assert_eq!(libc::setgid(65534), 0);
        assert_eq!(libc::setuid(65534), 0);
    }
}

/// Runs the admin tool with `args` in another process; fails the test
/// unless it succeeds.
pub fn tool(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_vircgroup-devices"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "vircgroup-devices {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Removes a cgroup directory (of either version) that a test made,
/// retrying for up to a second while the kernel still counts an exited
/// process in it; a failure is printed, not a panic (this runs in drops).
pub fn remove_cgroup(path: &Path) {
    for _ in 0..50 {
        match std::fs::remove_dir(path) {
            Ok(()) => return,
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            Err(e) => {
                eprintln!("cannot remove {}: {e}", path.display());
                return;
            }
        }
    }
    eprintln!("cannot remove {}: still busy", path.display());
}

/// `vircgroup_v2_last_error()` of this thread.
pub fn last_error() -> String {
    use vircgroup_v2_devices::capi::vircgroup_v2_last_error;
    // SAFETY: the library returns a valid C string.
    unsafe { std::ffi::CStr::from_ptr(vircgroup_v2_last_error()) }
        .to_string_lossy()
        .into_owned()
}

/// `vircgroup_v2_devices_list()` through the C ABI; a failure panics.
pub fn capi_list(path: &std::ffi::CStr) -> String {
    use vircgroup_v2_devices::capi::vircgroup_v2_devices_list;
    // SAFETY: valid C string; the result is malloc'ed and freed here.
    unsafe {
        let p = vircgroup_v2_devices_list(path.as_ptr());
        assert!(!p.is_null(), "list: {}", last_error());
        let s = std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned();
        libc::free(p.cast());
        s
    }
}

/// A temporary directory of device nodes, removed on drop.
pub struct Nodes {
    pub dir: PathBuf,
}

impl Nodes {
    pub fn new() -> Nodes {
        let dir = std::env::temp_dir().join(unique("vcg2-nodes"));
        std::fs::create_dir(&dir).expect("create node dir");
        Nodes { dir }
    }

    /// Makes node `name` of type `ty` ('c' or 'b') and returns its path.
    pub fn node(&self, name: &str, ty: char, major: u64, minor: u64) -> String {
        use nix::sys::stat::{makedev, mknod, Mode, SFlag};
        let path = self.dir.join(name);
        let kind = if ty == 'b' {
            SFlag::S_IFBLK
        } else {
            SFlag::S_IFCHR
        };
        mknod(
            &path,
            kind,
            Mode::from_bits_truncate(0o666),
            makedev(major, minor),
        )
        .expect("mknod");
        path.to_str().unwrap().to_string()
    }

    /// A path for a node the probe will try to create.
    pub fn fresh(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_string()
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Open fds of this process (the directory listing's own fd included, the
/// same every time).
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("list /proc/self/fd")
        .count()
}

/// What the fds of this process point to, for a message when the count
/// changed.
pub fn fd_targets() -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .expect("list /proc/self/fd")
        .filter_map(|e| {
            let e = e.ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            Some(format!(
                "{} -> {}",
                e.file_name().to_string_lossy(),
                target.display()
            ))
        })
        .collect();
    out.sort();
    out
}

/// Resident set size of this process in KiB.
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// A child process that is killed and reaped when dropped, whatever
/// happened to the test.
pub struct ChildGuard(pub std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What a probe loop saw: per access, the count of each result.
#[derive(Debug)]
pub struct LoopCounts {
    pub accesses: Vec<(String, std::collections::BTreeMap<String, u64>)>,
    pub iterations: u64,
}

impl LoopCounts {
    /// How often access `i` was denied by the cgroup (EPERM).
    pub fn denied(&self, i: usize) -> u64 {
        self.accesses[i].1.get("EPERM").copied().unwrap_or(0)
    }

    /// How often access `i` got past the cgroup (anything but EPERM).
    pub fn passed(&self, i: usize) -> u64 {
        self.accesses[i]
            .1
            .iter()
            .filter(|(r, _)| r.as_str() != "EPERM")
            .map(|(_, n)| n)
            .sum()
    }
}

/// vcg2-probe in loop mode inside a cgroup: started and ready (every access
/// tried once) when `start` returns; `stop` closes its stdin and reads its
/// counts. Dropped without `stop`, it is killed.
pub struct ProbeLoop {
    child: ChildGuard,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl ProbeLoop {
    pub fn start(cgroup: &Path, accesses: &[String]) -> ProbeLoop {
        use std::io::BufRead;
        use std::process::Stdio;
        // Bounded, so that a test that never stops it cannot hang on it.
        let child = Command::new(env!("CARGO_BIN_EXE_vcg2-probe"))
            .arg(cgroup)
            .arg("loop:300000")
            .args(accesses)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start vcg2-probe loop");
        let mut child = ChildGuard(child);
        let mut stdout = std::io::BufReader::new(child.0.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read probe");
        assert_eq!(line.trim(), "ready", "vcg2-probe loop did not start");
        ProbeLoop { child, stdout }
    }

    pub fn stop(mut self) -> LoopCounts {
        use std::io::Read;
        drop(self.child.0.stdin.take());
        let mut text = String::new();
        self.stdout.read_to_string(&mut text).expect("read probe");
        let status = self.child.0.wait().expect("wait probe");
        assert!(status.success(), "vcg2-probe loop failed: {status}");
        let mut accesses = Vec::new();
        let mut iterations = None;
        for line in text.lines() {
            if let Some(n) = line.strip_prefix("iterations ") {
                iterations = Some(n.parse().unwrap());
                continue;
            }
            let mut parts = line.split_whitespace();
            let access = parts.next().expect("an access");
            let counts = parts
                .map(|r| {
                    let (name, n) = r.split_once('=').expect("RESULT=COUNT");
                    (name.to_string(), n.parse().expect("a count"))
                })
                .collect();
            accesses.push((access.to_string(), counts));
        }
        LoopCounts {
            accesses,
            iterations: iterations.expect("iterations line"),
        }
    }
}

/// Sets up a cgroup the way libvirt's C code does: a hash map of `max`
/// entries holding `rules` (type, major, minor, perms) in libvirt's
/// encoding (written with the C ABI's `get_key` / `get_perms`), the seed's
/// program, attached without flags. Returns the program's id.
pub fn attach_like_libvirt(cgroup: &Path, max: u32, rules: &[(u8, i32, i32, i32)]) -> u32 {
    use std::os::fd::{AsFd, AsRawFd};
    use vircgroup_v2_devices::capi::{
        vircgroup_v2_devices_get_key, vircgroup_v2_devices_get_perms,
    };
    use vircgroup_v2_devices::{program::libvirt_program, sys};
    let map = sys::map_create(sys::BPF_MAP_TYPE_HASH, 8, 4, max, "").unwrap();
    for &(t, ma, mi, p) in rules {
        sys::map_update(
            map.as_fd(),
            vircgroup_v2_devices_get_key(ma, mi),
            vircgroup_v2_devices_get_perms(p, t as libc::c_char),
        )
        .unwrap();
    }
    let prog = sys::prog_load(
        sys::BPF_PROG_TYPE_CGROUP_DEVICE,
        &libvirt_program(map.as_raw_fd()),
        "GPL",
        "",
    )
    .unwrap();
    attach_raw(cgroup, &prog, 0);
    sys::prog_info(prog.as_fd()).unwrap().id
}

/// Attaches `prog` to the cgroup with `flags`, as another program would.
pub fn attach_raw(cgroup: &Path, prog: &std::os::fd::OwnedFd, flags: u32) {
    use std::os::fd::AsFd;
    use vircgroup_v2_devices::sys;
    let cgfd = std::fs::File::open(cgroup).unwrap();
    sys::prog_attach(
        cgfd.as_fd(),
        prog.as_fd(),
        sys::BPF_CGROUP_DEVICE,
        flags,
        None,
    )
    .unwrap();
}

/// A device program of someone else: allows everything, or, with
/// `deny_major`, everything but that major number.
pub fn foreign_program(deny_major: Option<i32>) -> std::os::fd::OwnedFd {
    use vircgroup_v2_devices::insn::{exit, jmp_imm, ldx_mem, mov64_imm, op, reg::*};
    use vircgroup_v2_devices::sys;
    let insns = match deny_major {
        None => vec![mov64_imm(R0, 1), exit()],
        Some(major) => vec![
            // r2 = ctx->major (struct bpf_cgroup_dev_ctx: access_type, major, minor)
            ldx_mem(op::BPF_W, R2, R1, 4),
            mov64_imm(R0, 1),
            jmp_imm(op::BPF_JNE, R2, major, 1),
            mov64_imm(R0, 0),
            exit(),
        ],
    };
    sys::prog_load(sys::BPF_PROG_TYPE_CGROUP_DEVICE, &insns, "GPL", "foreign").unwrap()
}

/// The id of a program fd.
pub fn prog_id(prog: &std::os::fd::OwnedFd) -> u32 {
    use std::os::fd::AsFd;
    vircgroup_v2_devices::sys::prog_info(prog.as_fd())
        .unwrap()
        .id
}

/// A rule from C-style arguments.
pub fn rule(t: u8, major: i32, minor: i32, perms: i32) -> Rule {
    Rule::new(t, major, minor, perms).unwrap()
}

/// Whether `name` is the name of a current program of the library.
pub fn is_our_program(name: &str) -> bool {
    use vircgroup_v2_devices::program::{hash, table};
    name == table::NAME || name == hash::NAME
}

/// What a map of the library holds, whatever its format: a table's value
/// bytes, or a hash map's sorted entries, as text.
pub fn map_content(map: std::os::fd::BorrowedFd<'_>) -> String {
    use vircgroup_v2_devices::sys;
    let info = sys::map_info(map).unwrap();
    if info.map_type == sys::BPF_MAP_TYPE_HASH {
        let mut e = sys::map_entries::<u64>(map).unwrap();
        e.sort_unstable();
        return format!("{e:x?}");
    }
    let mem = sys::MapMemory::map(map, info.value_size as usize).unwrap();
    let bytes: Vec<u8> = (0..mem.len() / 8)
        .flat_map(|i| {
            mem.word(8 * i)
                .load(std::sync::atomic::Ordering::Relaxed)
                .to_ne_bytes()
        })
        .collect();
    format!("{bytes:x?}")
}
