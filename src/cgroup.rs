// SPDX-License-Identifier: LGPL-2.1-or-later
//! A cgroup v2 directory: validation, identity, and the device programs
//! attached to it.
#![forbid(unsafe_code)]

use crate::sys::{self, Attached, BPF_CGROUP_DEVICE};
use crate::{Error, Result};
use nix::sys::statfs::{fstatfs, CGROUP2_SUPER_MAGIC};
use std::fs::OpenOptions;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Where the cgroup v2 filesystem is mounted, from `/proc/self/mountinfo`
/// (the first cgroup2 mount), whatever the distribution's layout.
pub fn cgroup2_mount() -> Option<PathBuf> {
    cgroup2_mounts().into_iter().next()
}

/// Every cgroup2 mount point, from `/proc/self/mountinfo`.
pub fn cgroup2_mounts() -> Vec<PathBuf> {
    mounts(|_| true)
}

/// Whether the cgroup open at `fd` with identity `id` is the root of the
/// hierarchy (inode 1 on cgroup2), or the root of a cgroup namespace as
/// some mount shows it. Only a mount's root (its parent on another
/// filesystem) can be a namespace's root: mountinfo is read for those
/// alone.
fn is_root(fd: &OwnedFd, id: (u64, u64)) -> bool {
    let mount_root = || {
        nix::sys::stat::fstatat(Some(fd.as_raw_fd()), "..", nix::fcntl::AtFlags::empty())
            .map_or(true, |parent| parent.st_dev != id.0)
    };
    id.1 == 1
        || (mount_root()
            && root_mounts()
                .iter()
                .any(|m| std::fs::metadata(m).is_ok_and(|s| (s.dev(), s.ino()) == id)))
}

/// The cgroup2 mount points that show the root of the hierarchy (or of
/// this process's cgroup namespace): their mountinfo root is `/`, unlike a
/// bind mount of a cgroup below it.
fn root_mounts() -> Vec<PathBuf> {
    mounts(|root| root == "/")
}

fn mounts(root_ok: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.lines()
        .filter_map(|line| {
            // "id parent major:minor root mount-point options ... - fstype source ..."
            let (left, right) = line.split_once(" - ")?;
            let mut fields = left.split_whitespace();
            let root = fields.nth(3)?;
            let mount = fields.next()?;
            (right.split_whitespace().next()? == "cgroup2" && root_ok(&unescape(root)))
                .then(|| PathBuf::from(unescape(mount)))
        })
        .collect()
}

/// A mountinfo path with its octal escapes (`\040` for a space) undone.
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// How long a change waits for another process's change of the same
/// cgroup (`Cgroup::lock`).
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// An open cgroup v2 directory.
#[derive(Debug)]
pub struct Cgroup {
    path: PathBuf,
    fd: OwnedFd,
    id: (u64, u64),
    root: bool,
    /// The locked file while this object holds the writers' lock, and how
    /// many guards of it are alive: a call that holds the lock may take it
    /// again (a second `flock` of the file, opened anew, would wait for the
    /// first).
    lock_file: std::cell::RefCell<Option<OwnedFd>>,
    lock_depth: std::cell::Cell<u32>,
}

/// A cgroup's writers' lock, held by this process until the last guard of
/// it is dropped: an exclusive `flock` on a file that only root can open
/// (see [`Cgroup::lock`]). The kernel releases it when the holder dies,
/// however it dies, so no liveness check is needed.
#[derive(Debug)]
pub struct Locked<'a>(&'a Cgroup);

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        let cg = self.0;
        let depth = cg.lock_depth.get() - 1;
        cg.lock_depth.set(depth);
        if depth == 0 {
            if let Some(file) = cg.lock_file.borrow_mut().take() {
                // Unlocked explicitly: a child forked meanwhile may still
                // share the open file (until its exec closes it), which
                // would keep the lock.
                sys::unlock(file.as_fd());
            }
        }
    }
}

/// Where the writers' lock files are on kernels without `cgroup.kill`
/// (before Linux 5.14): a directory only root can enter.
const LOCK_DIR: &str = "/run/vircgroup-v2-devices";

impl Cgroup {
    /// Opens `path`, which must be an absolute path to a directory on a
    /// cgroup v2 filesystem. The path is resolved (symlinks, `..`, trailing
    /// slashes) so that one cgroup has one name. The path is bytes (any
    /// name the kernel accepts); messages show it escaped.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let (path, shown) = (path.as_ref(), crate::rules::printable_path(path.as_ref()));
        if path.as_os_str().is_empty() {
            return Err(Error::invalid("cgroup path is empty"));
        }
        if !path.is_absolute() {
            return Err(Error::invalid(format!(
                "cgroup path '{shown}' is not absolute"
            )));
        }
        let resolved = std::fs::canonicalize(path).map_err(|e| {
            Error::sys(
                format_args!("cgroup path '{shown}'"),
                e.raw_os_error().unwrap_or(libc::EIO),
            )
        })?;
        let io = |call: &str, e: std::io::Error| {
            Error::sys(
                format_args!("{call}('{}')", crate::rules::printable_path(&resolved)),
                e.raw_os_error().unwrap_or(libc::EIO),
            )
        };
        // std opens with O_CLOEXEC.
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(&resolved)
            .map_err(|e| io("open", e))?;
        let st = file.metadata().map_err(|e| io("fstat", e))?;
        let fd = OwnedFd::from(file);
        let fs = fstatfs(&fd).map_err(|e| {
            let shown = crate::rules::printable_path(&resolved);
            Error::sys(format_args!("statfs('{shown}')"), e as i32)
        })?;
        if fs.filesystem_type() != CGROUP2_SUPER_MAGIC {
            return Err(Error::invalid(format!(
                "'{shown}' is not on a cgroup v2 filesystem"
            )));
        }
        let id = (st.dev(), st.ino());
        let root = is_root(&fd, id);
        Ok(Cgroup {
            path: resolved,
            fd,
            id,
            root,
            lock_file: Default::default(),
            lock_depth: Default::default(),
        })
    }

    /// Whether the directory is still a live cgroup (its `cgroup.procs` is
    /// there: a removed cgroup's open directory has no files left).
    pub fn exists(&self) -> bool {
        nix::sys::stat::fstatat(
            Some(self.fd.as_raw_fd()),
            "cgroup.procs",
            nix::fcntl::AtFlags::empty(),
        )
        .is_ok()
    }

    /// Whether this is the root of the cgroup2 hierarchy (or of a cgroup
    /// namespace): a device program there applies to every cgroup that
    /// has none of its own, so the library never attaches one.
    pub fn is_root(&self) -> bool {
        self.root
    }

    /// Fails with `EINVAL` on the root (`is_root`): for calls that change
    /// the cgroup.
    pub fn check_not_root(&self) -> Result<()> {
        if self.root {
            return Err(Error::invalid(format!(
                "'{}' is the root of the cgroup2 hierarchy: a device program there would \
                 apply to every cgroup without its own; refusing to change it",
                self.path.display()
            )));
        }
        Ok(())
    }

    /// Takes the cgroup's writers' lock, which every process of this
    /// library holds to adopt, build or replace the cgroup's program and to
    /// change its rules. Waits at most 10 s for another process, then fails
    /// with `EAGAIN`.
    ///
    /// The lock is an exclusive `flock` on the cgroup's `cgroup.kill`,
    /// opened write-only: the file is mode 0200 and owned by root, so no
    /// unprivileged process can open it and hold the lock (a cgroup
    /// directory, which anyone can open, would let any local user stall
    /// every change). It is the cgroup's own kernfs file, so processes in
    /// other mount, PID or cgroup namespaces of the host lock the same
    /// file. The library never writes to it. Kernels before 5.14 have no
    /// `cgroup.kill`: there the lock is a file named after the cgroup's
    /// inode in a root-only directory under `/run` (the same file for
    /// processes that share `/run`).
    pub fn lock(&self) -> Result<Locked<'_>> {
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        loop {
            if let Some(locked) = self.try_lock()? {
                return Ok(locked);
            }
            if std::time::Instant::now() > deadline {
                return Err(Error::new(
                    libc::EAGAIN,
                    format!(
                        "'{}' is locked by another process changing its device program, \
                         for more than {} s",
                        self.path.display(),
                        LOCK_WAIT.as_secs()
                    ),
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// The writers' lock when no other process holds it, None when one does
    /// (a reader's way to tell a writer at work from one that died).
    pub fn try_lock(&self) -> Result<Option<Locked<'_>>> {
        if self.lock_depth.get() == 0 {
            let file = self.open_lock_file()?;
            if !sys::try_lock_exclusive(file.as_fd())? || !self.still_named(&file) {
                return Ok(None);
            }
            *self.lock_file.borrow_mut() = Some(file);
        }
        self.lock_depth.set(self.lock_depth.get() + 1);
        Ok(Some(Locked(self)))
    }

    /// The file whose `flock` is the writers' lock ([`Cgroup::lock`]).
    fn open_lock_file(&self) -> Result<OwnedFd> {
        let file = if no_cgroup_kill() {
            self.open_private_lock_file()
        } else {
            let flags = libc::O_WRONLY | libc::O_NOCTTY | libc::O_NOFOLLOW;
            let what = format!("'{}/cgroup.kill', O_WRONLY", self.path.display());
            match sys::open_at(self.fd.as_fd(), c"cgroup.kill", flags, what) {
                // No cgroup.kill in a live cgroup: a kernel before 5.14.
                Err(e) if e.errno() == libc::ENOENT && self.exists() => {
                    self.open_private_lock_file()
                }
                other => other,
            }
        };
        file.map_err(|e| match e.errno() {
            libc::EACCES | libc::EPERM => Error::new(
                libc::EPERM,
                format!(
                    "changing the device program of '{}' needs root (CAP_BPF, CAP_NET_ADMIN \
                     and CAP_SYS_ADMIN, and the right to open the writers' lock): {e}",
                    self.path.display()
                ),
            ),
            _ => e,
        })
    }

    /// The name of the writers' lock file on kernels without `cgroup.kill`.
    fn private_lock_name(&self) -> String {
        format!("{LOCK_DIR}/cgroup-{}-{}.lock", self.id.0, self.id.1)
    }

    /// Whether the locked `file` is still the lock: a lock file is removed
    /// (under its lock) when the cgroup's state is forgotten, and a process
    /// that waited on the removed file must lock the new one instead.
    fn still_named(&self, file: &OwnedFd) -> bool {
        let Ok(st) = nix::sys::stat::fstat(file.as_raw_fd()) else {
            return false;
        };
        // cgroup.kill, the cgroup's own file, is never removed.
        st.st_dev == self.id.0
            || std::fs::metadata(self.private_lock_name())
                .is_ok_and(|m| (m.dev(), m.ino()) == (st.st_dev, st.st_ino))
    }

    /// Removes the writers' lock file of a kernel without `cgroup.kill`,
    /// under the lock, when the library forgets the cgroup (libvirt
    /// removes the VM's cgroup next): one file per cgroup ever changed
    /// would otherwise stay in `/run` until the next boot.
    pub fn remove_lock_file(&self) {
        if std::fs::symlink_metadata(self.private_lock_name()).is_err() {
            return;
        }
        if let Ok(Some(_locked)) = self.try_lock() {
            let _ = std::fs::remove_file(self.private_lock_name());
        }
    }

    /// The writers' lock on kernels without `cgroup.kill`: a file named
    /// after the cgroup in [`LOCK_DIR`].
    fn open_private_lock_file(&self) -> Result<OwnedFd> {
        private_lock_dir()?;
        let name = self.private_lock_name();
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&name)
            .map(OwnedFd::from)
            .map_err(|e| {
                Error::sys(
                    format_args!("open('{name}', O_CREAT)"),
                    e.raw_os_error().unwrap_or(libc::EIO),
                )
            })
    }

    /// The resolved path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// (device, inode) of the directory: a cgroup removed and created again
    /// at the same path is a different cgroup.
    pub fn id(&self) -> (u64, u64) {
        self.id
    }

    /// The device programs attached to this cgroup itself.
    pub fn attached(&self) -> Result<Attached> {
        sys::prog_query(self.fd.as_fd(), BPF_CGROUP_DEVICE)
            .map_err(|e| e.context(format_args!("cgroup '{}'", self.path.display())))
    }
}

/// Whether to act as a kernel without `cgroup.kill` (tests emulating an
/// older kernel).
fn no_cgroup_kill() -> bool {
    #[cfg(feature = "testing")]
    {
        crate::sys::hook::emulated().is_some_and(|k| k < crate::sys::Since(5, 14))
    }
    #[cfg(not(feature = "testing"))]
    false
}

/// [`LOCK_DIR`], made when missing, and refused unless it is a directory
/// that only its owner, root, can write to or enter.
fn private_lock_dir() -> Result<&'static str> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    match std::fs::DirBuilder::new().mode(0o700).create(LOCK_DIR) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(Error::sys(
                format_args!("mkdir('{LOCK_DIR}')"),
                e.raw_os_error().unwrap_or(libc::EIO),
            ))
        }
    }
    let st = std::fs::symlink_metadata(LOCK_DIR).map_err(|e| {
        Error::sys(
            format_args!("lstat('{LOCK_DIR}')"),
            e.raw_os_error().unwrap_or(libc::EIO),
        )
    })?;
    if !st.is_dir() || st.uid() != 0 || st.permissions().mode() & 0o077 != 0 {
        return Err(Error::new(
            libc::EPERM,
            format!(
                "'{LOCK_DIR}' (the writers' lock directory on kernels without cgroup.kill) \
                 is not a directory that only root can enter: refusing to lock in it"
            ),
        ));
    }
    Ok(LOCK_DIR)
}

impl AsFd for Cgroup {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
