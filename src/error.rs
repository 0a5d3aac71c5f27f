// SPDX-License-Identifier: LGPL-2.1-or-later
//! The one error type: an errno for C and a message that names what failed.
#![forbid(unsafe_code)]

use std::fmt;

/// An error with the errno C callers see and a message naming what failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    errno: i32,
    message: String,
}

/// Result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An error with an explicit errno. Control characters in `message`
    /// (a newline in a cgroup's name) are escaped as the admin tool shows
    /// them ([`crate::rules::printable`]): a message is one line.
    pub fn new(errno: i32, message: impl Into<String>) -> Self {
        let message = message.into();
        let message = if !message.chars().all(crate::rules::shown_as_is) {
            crate::rules::printable(&message)
        } else {
            message
        };
        Error { errno, message }
    }

    /// Bad argument from the caller: `EINVAL`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(libc::EINVAL, message)
    }

    /// A failed system call: the errno it returned, the call (with its
    /// arguments) named in the message.
    pub fn sys(call: impl fmt::Display, errno: i32) -> Self {
        let desc = std::io::Error::from_raw_os_error(errno);
        Self::new(errno, format!("{call}: {desc}"))
    }

    /// The errno for C callers.
    pub fn errno(&self) -> i32 {
        self.errno
    }

    /// The message for `vircgroup_v2_last_error()`.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The same error with `context` put in front of the message.
    pub fn context(self, context: impl fmt::Display) -> Self {
        Self::new(self.errno, format!("{context}: {}", self.message))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<nix::Error> for Error {
    fn from(e: nix::Error) -> Self {
        Self::new(e as i32, e.desc())
    }
}
