// SPDX-License-Identifier: LGPL-2.1-or-later
//! What the library knows of the process it runs in: its pid without a
//! system call per use, whether it is a child forked since the library's
//! state was made, and whether another process is alive.
//!
//! A `fork()` copies the library's memory, including locks other threads
//! held at that instant; those threads do not exist in the child, so the
//! child must never wait on them. A `pthread_atfork` child handler (it only
//! bumps a counter and stores the pid: async-signal-safe) tells the rest of
//! the library that its state belongs to the parent (`registry`).
#![forbid(unsafe_code)]

use crate::Result;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

static PID: AtomicU32 = AtomicU32::new(0);
static FORKS: AtomicU64 = AtomicU64::new(0);

fn child_after_fork() {
    PID.store(crate::sys::getpid(), Ordering::Relaxed);
    FORKS.fetch_add(1, Ordering::Release);
}

/// Registers the fork handler, the first time. Never waits: a child forked
/// while another thread was here must not block on it (a `Once` would).
fn init() {
    static REGISTERED: AtomicBool = AtomicBool::new(false);
    if PID.load(Ordering::Relaxed) != 0 {
        return;
    }
    if !REGISTERED.swap(true, Ordering::AcqRel) {
        if let Err(e) = crate::sys::at_fork_child(child_after_fork) {
            log::warn!(
                "pthread_atfork: {e}: calls in forked children may wait on the parent's locks"
            );
        }
    }
    PID.store(crate::sys::getpid(), Ordering::Relaxed);
}

/// This process's pid.
pub fn pid() -> u32 {
    init();
    PID.load(Ordering::Relaxed)
}

/// How many times the process forked since the library was first used: it
/// changes in every child.
pub fn forks() -> u64 {
    init();
    FORKS.load(Ordering::Acquire)
}

/// Whether process `pid` exists (`kill(pid, 0)`: it does when the signal
/// could be sent, or when only the permission is missing).
pub fn alive(pid: i32) -> bool {
    pid > 0 && crate::sys::process_exists(pid)
}

/// When process `pid` started (`/proc/PID/stat` field 22, clock ticks since
/// boot): with the pid, it names one process for good, even once the pid is
/// reused. None when there is no such process.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The high half of a token of this release: no pid is that large.
const BEACON: u64 = 0xffff_ffff;
/// The name of a beacon map (`bpftool map show`).
pub const BEACON_NAME: &str = "vcg2dev_beacon";

/// A new beacon: a one-element BPF array map, and this process's token as
/// a lock holder while it keeps the map open: [`BEACON`] in the high half,
/// the map's id in the low half. When the process is gone, however it went
/// and in whatever PID namespace it ran, the kernel frees the map and its
/// id stops resolving ([`holder_alive`]): a waiter needs no pid, which
/// would mean nothing across PID namespaces. The registry keeps one while
/// the process holds any cgroup's state (`registry::token`).
pub fn new_beacon() -> Result<(OwnedFd, u64)> {
    let beacon = crate::sys::map_create(crate::sys::BPF_MAP_TYPE_ARRAY, 4, 4, 1, BEACON_NAME)?;
    let id = crate::sys::map_info(beacon.as_fd())?.id;
    Ok((beacon, BEACON << 32 | id as u64))
}

/// Whether the holder `token` (another process's, see [`new_beacon`]) still runs:
/// its beacon's id still names a beacon map. A token of an earlier
/// release is a pid and the low half of its start time: that process
/// exists and started then (in this PID namespace).
pub fn holder_alive(token: u64) -> bool {
    if token >> 32 == BEACON {
        return match crate::sys::map_get_fd_by_id(token as u32) {
            // The id may have been reused (after 2^31 maps): a beacon is a
            // one-element array of 4-byte words.
            Ok(fd) => crate::sys::map_info(fd.as_fd()).map_or(true, |i| {
                (i.map_type, i.key_size, i.value_size, i.max_entries)
                    == (crate::sys::BPF_MAP_TYPE_ARRAY, 4, 4, 1)
            }),
            Err(e) if e.errno() == libc::ENOENT => false,
            // Cannot tell (no privilege to look): wait for it.
            Err(_) => true,
        };
    }
    let pid = (token >> 32) as u32;
    match start_time(pid) {
        Some(t) => (t as u32 | 1) == token as u32,
        // Without /proc mounted, the pid alone.
        None if start_time(crate::sys::getpid()).is_none() => alive(pid as i32),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A token of this release is its beacon's id, alive while the
    /// process is; an earlier release's is a pid and start time.
    #[test]
    fn a_holder_is_its_beacon_or_an_earlier_releases_pid_and_start_time() {
        // Making a BPF map needs root.
        let Ok((beacon, me)) = new_beacon() else {
            return;
        };
        assert_eq!(me >> 32, BEACON);
        assert!(holder_alive(me));
        drop(beacon);
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!holder_alive(me));
        // A beacon that is gone: a map made and closed again.
        let gone = crate::sys::map_create(crate::sys::BPF_MAP_TYPE_ARRAY, 4, 4, 1, "x").unwrap();
        let id = crate::sys::map_info(std::os::fd::AsFd::as_fd(&gone))
            .unwrap()
            .id;
        drop(gone);
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!holder_alive(BEACON << 32 | id as u64));
        // An earlier release's token: this process, then a reused pid and
        // a process that exited.
        let pid = pid();
        let old = (pid as u64) << 32 | (start_time(pid).unwrap() as u32 | 1) as u64;
        assert!(holder_alive(old));
        assert!(!holder_alive(old ^ 2));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let exited = (child.id() as u64) << 32 | 1;
        child.wait().unwrap();
        assert!(!holder_alive(exited));
    }
}
