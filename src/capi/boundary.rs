// SPDX-License-Identifier: LGPL-2.1-or-later
//! The one way in from C. Every export runs its work in [`call`] (or
//! [`group_call`]): a panic becomes an error, log messages wait until no
//! lock of the library is held, and an error becomes the export's failure
//! value, `errno` and the thread's last error message. Every path argument
//! is read by [`path_arg`].

use super::log;
use crate::{Error, Result};
use libc::{c_char, c_int};
use std::cell::{Cell, RefCell};
use std::ffi::{CStr, CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
    /// The last message of a call made while this thread's `LAST_ERROR`
    /// is already destroyed (from a thread-exit destructor). No destructor
    /// of its own, so it is always there; the string it points to is
    /// leaked, one per such thread at most.
    static EXITING_ERROR: Cell<*mut c_char> = const { Cell::new(std::ptr::null_mut()) };
}

/// Records `e` as the calling thread's last error and sets errno.
fn fail(e: &Error) {
    let mut message = Some(CString::new(e.message().replace('\0', "\\0")).unwrap_or_default());
    let _ = LAST_ERROR.try_with(|l| *l.borrow_mut() = message.take().unwrap_or_default());
    if let Some(message) = message {
        let old = EXITING_ERROR.with(|x| x.replace(message.into_raw()));
        if !old.is_null() {
            // SAFETY: made by CString::into_raw above, replaced, not used again.
            drop(unsafe { CString::from_raw(old) });
        }
    }
    nix::errno::Errno::set_raw(e.errno());
}

/// Runs `f` inside the boundary; on error sets errno and the message and
/// returns `on_error`. Log messages of the call reach the callback after
/// every lock is released and before errno is set, so a callback that
/// calls the library does not change what the caller sees.
pub(super) fn call<T>(on_error: T, f: impl FnOnce() -> Result<T>) -> T {
    let call = log::Call::enter();
    let result = catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(Error::new(libc::EIO, format!("internal error: {what}")))
    });
    if let Err(e) = &result {
        ::log::debug!("{e}");
    }
    drop(call);
    result.unwrap_or_else(|e| {
        fail(&e);
        on_error
    })
}

/// [`call`] for an export returning 0 on success, -1 on error.
pub(super) fn int_call(f: impl FnOnce() -> Result<()>) -> c_int {
    call(-1, || f().map(|()| 0))
}

/// [`int_call`] for an export whose only pointer argument is `group_path`.
pub(super) fn group_call(group_path: *const c_char, f: impl FnOnce(&Path) -> Result<()>) -> c_int {
    int_call(|| f(path_arg(group_path, "group_path")?))
}

/// The path argument `what` of an export: bytes, as the kernel takes
/// them (a cgroup's name need not be UTF-8).
///
/// Every export that passes a pointer here says in its `# Safety` section
/// that it is NULL or points to a NUL-terminated string that outlives the
/// call: that contract is what makes this read sound.
pub(super) fn path_arg<'a>(p: *const c_char, what: &str) -> Result<&'a Path> {
    if p.is_null() {
        return Err(Error::invalid(format!("{what} is NULL")));
    }
    // SAFETY: not NULL, and NUL-terminated and live for the call per the
    // exporting function's contract (above).
    let s = unsafe { CStr::from_ptr(p) };
    Ok(Path::new(OsStr::from_bytes(s.to_bytes())))
}

/// The calling thread's last error message ("" when none).
pub(super) fn last_error() -> *const c_char {
    static EMPTY: &CStr = c"";
    LAST_ERROR
        .try_with(|l| l.borrow().as_ptr())
        .unwrap_or_else(|_| {
            let p = EXITING_ERROR.with(Cell::get);
            if p.is_null() {
                EMPTY.as_ptr()
            } else {
                p
            }
        })
}
