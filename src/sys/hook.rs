// SPDX-License-Identifier: LGPL-2.1-or-later
//! Per-thread accounting of bpf(2) calls and fault injection, for tests and
//! benchmarks: every call the library makes goes through `bpf()`, so counting
//! there counts them all, and a fault injected there reaches every step
//! (create, prepare, grow, attach, detect) the way a real failure would.
//! Inert unless a test arms it; it is not part of the C ABI.
//!
//! Only in builds with the `testing` feature (tests and the benchmark);
//! the release library has no hook.
use super::features::Since;
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

/// Offset of `query.revision` in `union bpf_attr`.
pub const QUERY_REVISION_OFFSET: usize = 56;

/// What the emulated kernel writes as `query.revision`: no real revision
/// is ever this, and a test finds it wherever it landed.
pub const QUERY_REVISION_MARK: u64 = 0xdead_beef_5eed_0617;

thread_local! {
    static OUT_OF_BOUNDS: Cell<bool> = const { Cell::new(false) };
}

/// Makes this thread's bpf(2) calls behave as Linux 6.17 to 7.1 do on
/// `BPF_PROG_QUERY` (see [`wrote_back`]) whatever `VCG2_EMULATE_KERNEL`
/// says, until called with false.
pub fn emulate_query_revision(on: bool) {
    OUT_OF_BOUNDS.with(|o| o.set(on));
}

/// Called after each bpf(2) call with the memory that was passed to the
/// kernel as the attr. Linux 6.17 to 7.1 (`VCG2_EMULATE_KERNEL=6.17`
/// to `7.1`, or [`emulate_query_revision`]) copy `query.revision`, 8 bytes
/// at offset 56, back to user space on every `BPF_PROG_QUERY`, whatever
/// attr size was passed: so does this, into `attr`'s memory at that
/// offset even when `attr` is shorter (which is what those kernels do to
/// a caller passing less).
///
/// # Safety
/// `attr` must point to memory of at least `QUERY_REVISION_OFFSET + 8`
/// bytes that the caller may write, or the caller must be the test that
/// shows what this does to it.
pub(crate) unsafe fn wrote_back(cmd: i32, attr: *mut u8) {
    let kernel = emulated().is_some_and(|k| Since(6, 17) <= k && k < Since(7, 2));
    if cmd == super::cmd::PROG_QUERY && (kernel || OUT_OF_BOUNDS.with(Cell::get)) {
        // SAFETY: per this function's contract.
        unsafe {
            std::ptr::write_unaligned(
                attr.add(QUERY_REVISION_OFFSET) as *mut u64,
                QUERY_REVISION_MARK,
            )
        };
    }
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
