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
}

/// A cgroup's lock, held by this process until dropped.
#[derive(Debug)]
pub struct Locked<'a>(&'a Cgroup);

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        sys::unlock(self.0.fd.as_fd());
    }
}

impl Cgroup {
    /// Opens `path`, which must be an absolute path to a directory on a
    /// cgroup v2 filesystem. The path is resolved (symlinks, `..`, trailing
    /// slashes) so that one cgroup has one name.
    pub fn open(path: &str) -> Result<Self> {
        if path.is_empty() {
            return Err(Error::invalid("cgroup path is empty"));
        }
        if !path.starts_with('/') {
            return Err(Error::invalid(format!(
                "cgroup path '{path}' is not absolute"
            )));
        }
        let resolved = std::fs::canonicalize(path).map_err(|e| {
            Error::sys(
                format_args!("cgroup path '{path}'"),
                e.raw_os_error().unwrap_or(libc::EIO),
            )
        })?;
        let io = |call: &str, e: std::io::Error| {
            Error::sys(
                format_args!("{call}('{}')", resolved.display()),
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
        let fs = fstatfs(&fd)
            .map_err(|e| Error::sys(format_args!("statfs('{}')", resolved.display()), e as i32))?;
        if fs.filesystem_type() != CGROUP2_SUPER_MAGIC {
            return Err(Error::invalid(format!(
                "'{path}' is not on a cgroup v2 filesystem"
            )));
        }
        let id = (st.dev(), st.ino());
        // The root of the hierarchy (inode 1 on cgroup2), or the root of a
        // cgroup namespace as some mount shows it.
        // Only a mount's root (its parent on another filesystem) can be a
        // namespace's root: mountinfo is read for those alone.
        let mount_root = || {
            nix::sys::stat::fstatat(Some(fd.as_raw_fd()), "..", nix::fcntl::AtFlags::empty())
                .map_or(true, |parent| parent.st_dev != st.dev())
        };
        let root = st.ino() == 1
            || (mount_root()
                && root_mounts()
                    .iter()
                    .any(|m| std::fs::metadata(m).is_ok_and(|s| (s.dev(), s.ino()) == id)));
        Ok(Cgroup {
            path: resolved,
            fd,
            id,
            root,
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

    /// Takes the cgroup's lock (`flock` on its directory), which every
    /// process of this library takes to adopt, build or replace the
    /// cgroup's program and to change a format 5 map. Waits at most 10 s
    /// for another process, then fails with `EAGAIN`.
    pub fn lock(&self) -> Result<Locked<'_>> {
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        loop {
            if sys::try_lock_exclusive(self.fd.as_fd())? {
                return Ok(Locked(self));
            }
            if std::time::Instant::now() > deadline {
                return Err(Error::new(
                    libc::EAGAIN,
                    format!(
                        "'{}' is locked by another process changing its device program \
                         (flock), for more than {} s",
                        self.path.display(),
                        LOCK_WAIT.as_secs()
                    ),
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
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

impl AsFd for Cgroup {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
