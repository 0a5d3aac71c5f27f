// SPDX-License-Identifier: LGPL-2.1-or-later
//! The system calls other than bpf(2): `getpid`, `kill(pid, 0)`,
//! `pthread_atfork`, `getrandom`, `flock`, `openat`, `dup3`, `fcntl(F_GETFD)` and
//! `readlink` of `/proc/self/fd`.
use crate::{Error, Result};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// `getpid()`.
pub fn getpid() -> u32 {
    // SAFETY: getpid has no preconditions and cannot fail.
    unsafe { libc::getpid() as u32 }
}

/// Whether `kill(pid, 0)` finds the process (EPERM: it exists, owned by
/// someone else).
pub fn process_exists(pid: i32) -> bool {
    // SAFETY: signal 0 sends nothing; only the existence check is made.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

static CHILD_HOOK: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

extern "C" fn run_child_hook() {
    // An atomic load: nothing that could wait on another thread.
    if let Some(f) = CHILD_HOOK.get() {
        f();
    }
}

/// Registers `f` to run in the child after every `fork()`. Call once.
/// `f` must be async-signal-safe (the child of a multithreaded process may
/// only do that much before `exec`).
pub fn at_fork_child(f: fn()) -> Result<()> {
    if CHILD_HOOK.set(f).is_err() {
        return Err(Error::invalid("at_fork_child called twice"));
    }
    // SAFETY: registers a plain extern "C" function with no arguments.
    let r = unsafe { libc::pthread_atfork(None, None, Some(run_child_hook)) };
    if r != 0 {
        return Err(Error::sys("pthread_atfork", r));
    }
    Ok(())
}

/// Fills `buf` from the kernel's random pool (`getrandom(2)`).
pub fn getrandom(buf: &mut [u8]) -> Result<()> {
    // SAFETY: writes at most buf.len() bytes into buf.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n != buf.len() as isize {
        let errno = std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO);
        return Err(Error::sys("getrandom", errno));
    }
    Ok(())
}

/// `flock(fd, LOCK_EX | LOCK_NB)`: Ok(false) when another open file holds
/// the lock.
pub fn try_lock_exclusive(fd: std::os::fd::BorrowedFd<'_>) -> Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on an open fd; no memory is passed.
    if unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::EWOULDBLOCK) => Ok(false),
        e => Err(Error::sys(
            format_args!("flock(fd {}, LOCK_EX)", fd.as_raw_fd()),
            e.unwrap_or(libc::EIO),
        )),
    }
}

/// `flock(fd, LOCK_UN)`.
pub fn unlock(fd: std::os::fd::BorrowedFd<'_>) {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on an open fd; no memory is passed. Unlocking a file
    // this process locked cannot fail but for a bad fd.
    unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_UN) };
}

/// `openat(dir, name, flags | O_CLOEXEC)`: an fd this process owns. The
/// error names the file as `what`.
pub fn open_at(
    dir: std::os::fd::BorrowedFd<'_>,
    name: &std::ffi::CStr,
    flags: i32,
    what: impl std::fmt::Display,
) -> Result<std::os::fd::OwnedFd> {
    use std::os::fd::{AsRawFd, FromRawFd};
    // SAFETY: `name` is a NUL-terminated string that outlives the call;
    // no mode is passed, so O_CREAT must not be in `flags`.
    debug_assert!(flags & libc::O_CREAT == 0);
    let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        let errno = std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO);
        return Err(Error::sys(format_args!("open({what})"), errno));
    }
    // SAFETY: a new fd that nothing else owns.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// Makes `onto`'s fd number refer to `from`'s object (`dup3`), closing
/// what `onto` referred to and `from`'s own number: the object keeps the
/// number a caller gave the library.
pub fn dup_onto(from: OwnedFd, onto: OwnedFd) -> Result<OwnedFd> {
    // SAFETY: both fds are open and owned here; dup3 atomically closes
    // onto's old object and makes the number refer to from's, with
    // O_CLOEXEC as every fd of the library.
    let r = unsafe { libc::dup3(from.as_raw_fd(), onto.as_raw_fd(), libc::O_CLOEXEC) };
    if r < 0 {
        let errno = std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO);
        return Err(Error::sys(
            format_args!("dup3({}, {})", from.as_raw_fd(), onto.as_raw_fd()),
            errno,
        ));
    }
    drop(from);
    Ok(onto)
}

/// What an fd refers to, as `/proc/self/fd` names it (`anon_inode:bpf-map`
/// for a BPF map).
pub fn fd_kind(fd: RawFd) -> Result<String> {
    let link = format!("/proc/self/fd/{fd}");
    std::fs::read_link(&link)
        .map(|p| p.to_string_lossy().into_owned())
        .map_err(|e| {
            Error::sys(
                format_args!("readlink({link})"),
                e.raw_os_error().unwrap_or(libc::EIO),
            )
        })
}

/// Whether `fd` is an open file descriptor (`fcntl(F_GETFD)`).
pub fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only reads the fd's flags.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

/// Closes `fd`, an fd a forked child inherited and owns alone (its
/// parent's library state, which the child never uses).
pub fn close_inherited(fd: std::os::fd::RawFd) {
    // SAFETY: the caller owns `fd` and nothing else in this process
    // refers to it.
    unsafe { libc::close(fd) };
}
