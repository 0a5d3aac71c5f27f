// SPDX-License-Identifier: LGPL-2.1-or-later
//! Per-thread accounting of bpf(2) calls and fault injection, for tests and
//! benchmarks: every call the library makes goes through `bpf()`, so counting
//! there counts them all, and a fault injected there reaches every step
//! (create, prepare, grow, attach, detect) the way a real failure would.
//! Inert unless a test arms it; it is not part of the C ABI.
//!
//! Only in builds with the `testing` feature (tests and the benchmark);
//! the release library has no hook.
use super::bpf::Since;
use std::cell::Cell;
use std::sync::OnceLock;

/// The kernel this process emulates, from `VCG2_EMULATE_KERNEL` (`5.4`,
/// `4.15`, ...): every bpf(2) call that needs a newer one fails with
/// `EINVAL` without reaching the kernel, as that kernel answers a command,
/// flag or instruction it does not know. Unset: the real kernel.
pub fn emulated() -> Option<Since> {
    static EMULATED: OnceLock<Option<Since>> = OnceLock::new();
    *EMULATED.get_or_init(|| {
        let v = std::env::var("VCG2_EMULATE_KERNEL").ok()?;
        let (major, minor) = v.split_once('.')?;
        Some(Since(major.parse().ok()?, minor.parse().ok()?))
    })
}

pub(crate) fn refused(since: Since) -> Option<i32> {
    emulated().filter(|&k| k < since).map(|_| libc::EINVAL)
}

/// Number of `enum bpf_cmd` values counted; larger commands are counted
/// in the last slot.
pub const COMMANDS: usize = 40;

#[derive(Clone, Copy)]
struct Fault {
    cmd: Option<i32>,
    skip: u32,
    errno: i32,
    /// Fails every matching call from the first one on, not just one.
    sticky: bool,
}

thread_local! {
    static CALLS: Cell<[u64; COMMANDS]> = const { Cell::new([0; COMMANDS]) };
    static FAULT: Cell<Option<Fault>> = const { Cell::new(None) };
    static FIRED: Cell<Option<i32>> = const { Cell::new(None) };
    static DELAY: Cell<Option<(i32, std::time::Duration)>> = const { Cell::new(None) };
}

/// Makes this thread's next bpf(2) call of `cmd` sleep `how_long` first
/// (once): a slow call, holding whatever locks the library holds then.
pub fn delay(cmd: i32, how_long: std::time::Duration) {
    DELAY.with(|d| d.set(Some((cmd, how_long))));
}

pub(crate) fn delayed(cmd: i32) {
    if let Some((c, how_long)) = DELAY.with(Cell::get) {
        if c == cmd {
            DELAY.with(|d| d.set(None));
            std::thread::sleep(how_long);
        }
    }
}

pub(crate) fn count(cmd: i32) {
    CALLS.with(|c| {
        let mut calls = c.get();
        calls[(cmd.max(0) as usize).min(COMMANDS - 1)] += 1;
        c.set(calls);
    });
}

pub(crate) fn injected(cmd: i32) -> Option<i32> {
    FAULT.with(|f| {
        let mut fault = f.get()?;
        if fault.cmd.is_some_and(|c| c != cmd) {
            return None;
        }
        if fault.skip > 0 {
            fault.skip -= 1;
            f.set(Some(fault));
            return None;
        }
        if !fault.sticky {
            f.set(None);
        }
        FIRED.with(|fired| {
            if fired.get().is_none() {
                fired.set(Some(cmd));
            }
        });
        Some(fault.errno)
    })
}

/// bpf(2) calls made by this thread so far, indexed by command.
pub fn calls() -> [u64; COMMANDS] {
    CALLS.with(Cell::get)
}

/// Total bpf(2) calls made by this thread so far.
pub fn total_calls() -> u64 {
    calls().iter().sum()
}

fn arm(cmd: Option<i32>, skip: u32, errno: i32, sticky: bool) {
    FIRED.with(|f| f.set(None));
    FAULT.with(|f| {
        f.set(Some(Fault {
            cmd,
            skip,
            errno,
            sticky,
        }))
    });
}

/// Makes this thread's bpf(2) call number `skip` from now (0 = the next
/// one), counting only calls of `cmd` when given, fail with `errno`
/// without reaching the kernel. The fault fires once.
pub fn fail(cmd: Option<i32>, skip: u32, errno: i32) {
    arm(cmd, skip, errno, false);
}

/// Like [`fail`], but every matching call from that one on fails too,
/// until [`disarm`]: a lasting condition (a missing privilege, memory
/// that stays short), which a retry does not get past.
pub fn fail_from(cmd: Option<i32>, skip: u32, errno: i32) {
    arm(cmd, skip, errno, true);
}

/// The command of the first call failed since the last [`fail`] or
/// [`fail_from`]; None when the fault has not fired.
pub fn fired() -> Option<i32> {
    FIRED.with(Cell::get)
}

/// Disarms the fault; returns whether one was still armed (a fault of
/// [`fail`] that has not fired, or any of [`fail_from`]).
pub fn disarm() -> bool {
    FAULT.with(|f| f.take().is_some())
}
