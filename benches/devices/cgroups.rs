// SPDX-License-Identifier: LGPL-2.1-or-later
//! What the benchmark makes and must remove: scratch cgroups (their
//! programs detached on drop), device nodes, the stats fd, and Ctrl-C
//! turned into a clean stop.

use crate::ours;
use crate::Res;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use vircgroup_v2_devices::sys::{self, BPF_CGROUP_DEVICE};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// Ctrl-C (or SIGTERM, SIGHUP) ends the run at the next step instead of
/// killing the process, so that every guard still cleans up.
pub(crate) fn catch_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe; it lives as long as the process.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
}

pub(crate) fn check_stop() -> Res<()> {
    if STOP.load(Ordering::Relaxed) {
        Err("interrupted".into())
    } else {
        Ok(())
    }
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A name no other run (nor an earlier one of this process) uses.
pub(crate) fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}-{}-{}-{nanos:x}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// A cgroup this benchmark made. On drop: the programs it attached are
/// detached, the library's program (when the library was used on it) is
/// detached and forgotten, and the directory is removed.
pub(crate) struct Cg {
    pub(crate) path: PathBuf,
    dir: File,
    /// The library was called on this cgroup.
    library: bool,
    /// Programs this benchmark attached itself.
    pub(crate) attached: Vec<OwnedFd>,
    /// Other fds to keep until the cgroup goes (a replayed libvirt's map).
    pub(crate) keep: Vec<OwnedFd>,
}

impl Cg {
    pub(crate) fn new(parent: &Path, name: &str) -> Res<Cg> {
        let path = parent.join(name);
        std::fs::create_dir(&path).map_err(|e| format!("mkdir {}: {e}", path.display()))?;
        let dir = match File::open(&path) {
            Ok(dir) => dir,
            Err(e) => {
                let _ = std::fs::remove_dir(&path);
                return Err(format!("open {}: {e}", path.display()).into());
            }
        };
        Ok(Cg {
            path,
            dir,
            library: false,
            attached: Vec::new(),
            keep: Vec::new(),
        })
    }

    pub(crate) fn p(&self) -> &str {
        self.path
            .to_str()
            .expect("the names this benchmark makes are UTF-8")
    }

    /// Marks the cgroup as the library's before the library touches it;
    /// its path as the C ABI takes it.
    pub(crate) fn library(&mut self) -> Res<ours::Path> {
        self.library = true;
        ours::Path::new(self.p())
    }

    /// Attaches `prog` with no flags, as libvirt does.
    pub(crate) fn attach(&mut self, prog: OwnedFd) -> Res<()> {
        sys::prog_attach(self.dir.as_fd(), prog.as_fd(), BPF_CGROUP_DEVICE, 0, None)?;
        self.attached.push(prog);
        Ok(())
    }

    /// Attaches `prog` (a new fd on it) with `BPF_F_ALLOW_MULTI`, after the
    /// programs attached before: every open runs them all, in that order.
    pub(crate) fn attach_multi(&mut self, prog: &OwnedFd) -> Res<()> {
        let prog = prog.try_clone()?;
        sys::prog_attach(
            self.dir.as_fd(),
            prog.as_fd(),
            BPF_CGROUP_DEVICE,
            sys::BPF_F_ALLOW_MULTI,
            None,
        )?;
        self.attached.push(prog);
        Ok(())
    }

    /// The one program attached to the cgroup (a new fd on it).
    pub(crate) fn program(&self) -> Res<OwnedFd> {
        let attached = sys::prog_query(self.dir.as_fd(), BPF_CGROUP_DEVICE)?;
        match attached.ids[..] {
            [id] => Ok(sys::prog_get_fd_by_id(id)?),
            ref ids => Err(format!(
                "{}: expected one device program, found {ids:?}",
                self.path.display()
            )
            .into()),
        }
    }
}

impl Drop for Cg {
    fn drop(&mut self) {
        for prog in self.attached.drain(..) {
            if let Err(e) = sys::prog_detach(self.dir.as_fd(), prog.as_fd(), BPF_CGROUP_DEVICE) {
                eprintln!("cleanup: {}: {e}", self.path.display());
            }
        }
        if self.library {
            if let Err(e) = ours::Path::new(self.p()).and_then(|p| ours::forget(&p)) {
                eprintln!("cleanup: {e}");
            }
        }
        // A child that just exited may keep the cgroup busy for a moment.
        for _ in 0..100 {
            match std::fs::remove_dir(&self.path) {
                Ok(()) => return,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => {
                    eprintln!("cleanup: cannot remove {}: {e}", self.path.display());
                    return;
                }
            }
        }
        eprintln!("cleanup: {} stays busy", self.path.display());
    }
}

/// A directory of device nodes, removed on drop.
pub(crate) struct Nodes {
    dir: PathBuf,
}

impl Nodes {
    pub(crate) fn new() -> Res<Nodes> {
        let dir = std::env::temp_dir().join(unique("vcg2-bench-nodes"));
        std::fs::create_dir(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        Ok(Nodes { dir })
    }

    /// The char device node `major:minor`, made the first time.
    pub(crate) fn char_node(&self, major: u64, minor: u64) -> Res<String> {
        use nix::sys::stat::{makedev, mknod, Mode, SFlag};
        let path = self.dir.join(format!("c{major}-{minor}"));
        if path.exists() {
            return Ok(path.to_str().expect("UTF-8").to_string());
        }
        mknod(
            &path,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o600),
            makedev(major, minor),
        )
        .map_err(|e| format!("mknod {}: {e}", path.display()))?;
        Ok(path.to_str().expect("UTF-8").to_string())
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("cleanup: cannot remove {}: {e}", self.dir.display());
        }
    }
}

/// Run-time stats on while held (`BPF_ENABLE_STATS`); off again on drop
/// unless someone else holds them on.
pub(crate) struct Stats(#[allow(dead_code)] pub(crate) OwnedFd);
