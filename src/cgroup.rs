//! A cgroup v2 directory: validation, identity, and the device programs
//! attached to it.
#![forbid(unsafe_code)]

use crate::sys::{self, Attached, BPF_CGROUP_DEVICE};
use crate::{Error, Result};
use nix::sys::statfs::{fstatfs, CGROUP2_SUPER_MAGIC};
use std::fs::OpenOptions;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Where the cgroup v2 filesystem is mounted, from `/proc/self/mountinfo`
/// (the first cgroup2 mount), whatever the distribution's layout.
pub fn cgroup2_mount() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|line| {
        // "id parent major:minor root mount-point options ... - fstype source ..."
        let (left, right) = line.split_once(" - ")?;
        let mount = left.split_whitespace().nth(4)?;
        (right.split_whitespace().next()? == "cgroup2").then(|| PathBuf::from(mount))
    })
}

/// An open cgroup v2 directory.
#[derive(Debug)]
pub struct Cgroup {
    path: PathBuf,
    fd: OwnedFd,
    id: (u64, u64),
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
        Ok(Cgroup {
            path: resolved,
            fd,
            id: (st.dev(), st.ino()),
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

impl AsFd for Cgroup {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
