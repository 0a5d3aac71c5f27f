// SPDX-License-Identifier: LGPL-2.1-or-later
//! The memory of a `BPF_F_MMAPABLE` array map, mapped into this process.
//!
//! The kernel and every process that maps the same map share these pages:
//! a store here is seen by the device program's next load, with no system
//! call. Words are accessed only as atomics of their natural size and
//! alignment, which is what makes a store and the program's load of the
//! same word indivisible on every 64-bit architecture the kernel's BPF JIT
//! supports (an aligned 8-byte access is single-copy atomic there).
use crate::{Error, Result};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8};

/// A shared, writable mapping of a map's values.
#[derive(Debug)]
pub struct MapMemory {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory that is only accessed through
// atomics; it does not belong to any thread.
unsafe impl Send for MapMemory {}
// SAFETY: as above: every access is atomic.
unsafe impl Sync for MapMemory {}

impl MapMemory {
    /// Maps the first `len` bytes (rounded up to pages by the kernel) of the
    /// `BPF_F_MMAPABLE` map `map`, shared and writable.
    pub fn map(map: BorrowedFd<'_>, len: usize) -> Result<Self> {
        if len == 0 {
            return Err(Error::invalid("mmap of an empty map"));
        }
        // SAFETY: a new mapping chosen by the kernel (no address given), of
        // an fd that is open for the duration of the call; nothing else
        // refers to the memory it returns.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                map.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            let errno = std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO);
            return Err(Error::sys(
                format_args!(
                    "mmap(map fd {}, {len} bytes, shared, read-write)",
                    map.as_raw_fd()
                ),
                errno,
            ));
        }
        let mem = MapMemory {
            ptr: NonNull::new(p.cast()).expect("mmap does not return NULL on success"),
            len,
        };
        // A forked child gets no copy of the mapping: a child that drops
        // its privileges without exec() must not be able to write the
        // rules through memory it inherited. The child's library never
        // uses its parent's state (`registry`), so nothing there touches it.
        // SAFETY: advice on the mapping just made, which `mem` owns.
        if unsafe { libc::madvise(p, len, libc::MADV_DONTFORK) } != 0 {
            let errno = std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO);
            return Err(Error::sys(
                format_args!(
                    "madvise({len} bytes of map fd {}, MADV_DONTFORK)",
                    map.as_raw_fd()
                ),
                errno,
            ));
        }
        Ok(mem)
    }

    /// Bytes mapped.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is mapped (never: `map` refuses 0 bytes).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The address of the `size`-byte word at byte `offset`. Panics unless
    /// it is aligned to its size and inside the mapping.
    fn at(&self, offset: usize, size: usize) -> *mut u8 {
        assert!(
            offset % size == 0 && offset + size <= self.len,
            "word at {offset} of {}",
            self.len
        );
        // SAFETY: offset is inside the mapping (checked above).
        unsafe { self.ptr.as_ptr().add(offset) }
    }

    /// The 8-byte word at byte `offset`. Panics unless it is aligned and
    /// inside the mapping.
    pub fn word(&self, offset: usize) -> &AtomicU64 {
        // SAFETY: `at` checked bounds and alignment (the mapping is
        // page-aligned); the memory lives as long as `self`, and is only
        // accessed through atomics.
        unsafe { AtomicU64::from_ptr(self.at(offset, 8).cast()) }
    }

    /// The 4-byte word at byte `offset`. Panics unless it is aligned and
    /// inside the mapping.
    pub fn word32(&self, offset: usize) -> &AtomicU32 {
        // SAFETY: as for `word`.
        unsafe { AtomicU32::from_ptr(self.at(offset, 4).cast()) }
    }

    /// The byte at `offset`. Panics unless it is inside the mapping.
    pub fn byte(&self, offset: usize) -> &AtomicU8 {
        assert!(offset < self.len, "byte at {offset} of {}", self.len);
        // SAFETY: in bounds; lives as long as `self`; only accessed atomically.
        unsafe { AtomicU8::from_ptr(self.ptr.as_ptr().add(offset)) }
    }
}

impl Drop for MapMemory {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, unmapped once; no reference
        // into it outlives `self`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}
