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

/// This process as a lock holder: its pid in the high half, the low half
/// of its start time in the low half (never 0). Read once per process
/// (a forked child reads its own).
pub fn token() -> u64 {
    static TOKEN: AtomicU64 = AtomicU64::new(0);
    static FOR: AtomicU64 = AtomicU64::new(u64::MAX);
    let forks = forks();
    if FOR.load(Ordering::Acquire) == forks {
        return TOKEN.load(Ordering::Acquire);
    }
    let pid = pid();
    let t = (pid as u64) << 32 | (start_time(pid).unwrap_or(0) as u32 | 1) as u64;
    TOKEN.store(t, Ordering::Release);
    FOR.store(forks, Ordering::Release);
    t
}

/// Whether the holder `token` (another process's [`token`]) still runs:
/// its pid exists and started when the token says. A pid reused by
/// another process is not the holder.
pub fn holder_alive(token: u64) -> bool {
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

    #[test]
    fn a_holder_is_its_pid_and_start_time() {
        let me = token();
        assert!(holder_alive(me));
        assert_eq!(me >> 32, pid() as u64);
        // The same pid with another start time: a reused pid.
        assert!(!holder_alive(me ^ 2));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let gone = (child.id() as u64) << 32 | 1;
        child.wait().unwrap();
        assert!(!holder_alive(gone));
    }
}
