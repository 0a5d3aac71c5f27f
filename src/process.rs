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

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Once;

static PID: AtomicU32 = AtomicU32::new(0);
static FORKS: AtomicU64 = AtomicU64::new(0);

fn child_after_fork() {
    PID.store(crate::sys::getpid(), Ordering::Relaxed);
    FORKS.fetch_add(1, Ordering::Release);
}

fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        PID.store(crate::sys::getpid(), Ordering::Relaxed);
        if let Err(e) = crate::sys::at_fork_child(child_after_fork) {
            log::warn!(
                "pthread_atfork: {e}: calls in forked children may wait on the parent's locks"
            );
        }
    });
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
