// SPDX-License-Identifier: LGPL-2.1-or-later
//! `RLIMIT_MEMLOCK`, which kernels before 5.11 charge BPF maps and
//! programs to: read, raised as far as the process may, and the retry of a
//! map creation or program load that the limit refused.
use crate::{Error, Result};
use std::os::fd::OwnedFd;

/// `RLIMIT_MEMLOCK` as (soft, hard).
pub fn memlock_limit() -> Result<(u64, u64)> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: writes one rlimit into r.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r) } != 0 {
        let errno = std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO);
        return Err(Error::sys("getrlimit(RLIMIT_MEMLOCK)", errno));
    }
    // rlim_t is 32 bits on some targets.
    #[allow(clippy::unnecessary_cast)]
    Ok((r.rlim_cur as u64, r.rlim_max as u64))
}

/// `setrlimit(RLIMIT_MEMLOCK, soft, hard)`.
pub fn set_memlock_limit(soft: u64, hard: u64) -> Result<()> {
    let r = libc::rlimit {
        rlim_cur: soft as libc::rlim_t,
        rlim_max: hard as libc::rlim_t,
    };
    // SAFETY: reads one rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &r) } != 0 {
        let errno = std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO);
        return Err(Error::sys(
            format_args!("setrlimit(RLIMIT_MEMLOCK, {soft}, {hard})"),
            errno,
        ));
    }
    Ok(())
}

/// `RLIM_INFINITY`.
#[allow(clippy::unnecessary_cast)]
pub const UNLIMITED: u64 = libc::RLIM_INFINITY as u64;

/// Raises `RLIMIT_MEMLOCK` as far as this process may: the soft limit to
/// the hard one, then both to unlimited (which needs `CAP_SYS_RESOURCE`).
/// True when the limit changed.
pub fn raise_memlock() -> bool {
    let Ok((soft, hard)) = memlock_limit() else {
        return false;
    };
    let unlimited = UNLIMITED;
    if soft == unlimited {
        return false;
    }
    let raised = if set_memlock_limit(unlimited, unlimited).is_ok() {
        unlimited
    } else if hard > soft && set_memlock_limit(hard, hard).is_ok() {
        hard
    } else {
        return false;
    };
    log::info!(
        "raised RLIMIT_MEMLOCK from {soft} to {}: before Linux 5.11 BPF maps and programs \
         are charged to it",
        if raised == unlimited {
            "unlimited".to_string()
        } else {
            raised.to_string()
        }
    );
    true
}

/// Runs a map creation or program load; when it fails with `EPERM` or
/// `ENOMEM`, raises `RLIMIT_MEMLOCK` (once per process) and, if the limit
/// was raised, runs it once more. Before Linux 5.11 maps and programs are
/// charged to that limit, which is 64 KiB by default on many systems; like libbpf,
/// the library lifts the soft limit to the hard one, and both to unlimited
/// when the process may (`CAP_SYS_RESOURCE`). Kernels since 5.11 charge the
/// memory cgroup instead, and never get here for the limit.
///
/// Threads that fail while another raises the limit wait for it (bounded,
/// without a lock, so that a child forked meanwhile cannot hang) and then
/// retry too: each of them may have been refused by the old limit.
pub(super) fn memlock_retry(
    attempt: impl Fn() -> std::result::Result<OwnedFd, i32>,
) -> std::result::Result<OwnedFd, i32> {
    use std::sync::atomic::{AtomicU8, Ordering};
    const UNTRIED: u8 = 0;
    const RAISING: u8 = 1;
    const RAISED: u8 = 2;
    const NOT_RAISED: u8 = 3;
    static STATE: AtomicU8 = AtomicU8::new(UNTRIED);
    let e = match attempt() {
        Err(e @ (libc::EPERM | libc::ENOMEM)) => e,
        other => return other,
    };
    let state = match STATE.compare_exchange(UNTRIED, RAISING, Ordering::AcqRel, Ordering::Acquire)
    {
        Ok(_) => {
            let state = if raise_memlock() { RAISED } else { NOT_RAISED };
            STATE.store(state, Ordering::Release);
            state
        }
        Err(mut state) => {
            // setrlimit takes microseconds; 100 ms bounds a raise that
            // never ends (a thread of the parent, in a forked child).
            for _ in 0..100 {
                if state != RAISING {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
                state = STATE.load(Ordering::Acquire);
            }
            state
        }
    };
    if state == RAISED {
        attempt()
    } else {
        Err(e)
    }
}
