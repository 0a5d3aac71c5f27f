// SPDX-License-Identifier: LGPL-2.1-or-later
//! The log callback of the C API (`vircgroup_v2_set_log_func`).
//!
//! The callback runs with no lock of the library held, so it may call the
//! library (on the same cgroup too) or change the callback: messages logged
//! during a C call are queued for the calling thread and delivered when the
//! call returns (`Call::drop`); messages logged outside a C call (the Rust
//! API) are delivered at once.
//!
//! The callback and its opaque pointer are two words behind a sequence
//! counter, not a lock: a child forked while another thread was reading
//! them never waits, and a reader never pairs one callback with another's
//! pointer.
use libc::{c_char, c_int, c_void};
use std::cell::{Cell, RefCell};
use std::ffi::CString;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Once;

/// The C callback type.
pub type LogFn = unsafe extern "C" fn(c_int, *const c_char, *mut c_void);

static FUNC: AtomicUsize = AtomicUsize::new(0);
static OPAQUE: AtomicUsize = AtomicUsize::new(0);
static SEQ: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Nesting of C calls on this thread (no destructor: usable during
    /// thread exit).
    static DEPTH: Cell<u32> = const { Cell::new(0) };
    /// Messages of the current C call, delivered when it returns.
    static PENDING: RefCell<Vec<(c_int, String)>> = const { RefCell::new(Vec::new()) };
}

/// Sets (or, with None, clears) the callback.
pub fn set(func: Option<LogFn>, opaque: *mut c_void) {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // Fails only when the host program installed its own Rust logger.
        let _ = log::set_logger(&CLogger);
    });
    // Writers take the counter from even to odd; a concurrent setter waits
    // for the two stores of the other (bounded: one that died half-way in a
    // forked child is taken over).
    for spins in 0.. {
        let s = SEQ.load(Ordering::Acquire);
        let odd = if s % 2 == 0 { s + 1 } else { s };
        if (s % 2 == 0 || spins > 1_000_000)
            && SEQ
                .compare_exchange(s, odd, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            break;
        }
        std::hint::spin_loop();
    }
    FUNC.store(func.map_or(0, |f| f as usize), Ordering::Release);
    OPAQUE.store(opaque as usize, Ordering::Release);
    SEQ.fetch_add(1, Ordering::AcqRel);
    log::set_max_level(if func.is_some() {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Off
    });
}

/// The callback and its pointer, read consistently.
fn sink() -> Option<(LogFn, usize)> {
    for _ in 0..1_000_000 {
        let s = SEQ.load(Ordering::Acquire);
        if s % 2 == 1 {
            std::hint::spin_loop();
            continue;
        }
        let (f, o) = (FUNC.load(Ordering::Acquire), OPAQUE.load(Ordering::Acquire));
        if SEQ.load(Ordering::Acquire) == s {
            if f == 0 {
                return None;
            }
            // SAFETY: f is 0 or a LogFn stored by `set` (fn pointers are
            // pointer-sized on every target Rust supports).
            let f: LogFn = unsafe { std::mem::transmute::<usize, LogFn>(f) };
            return Some((f, o));
        }
    }
    // A setter died half-way in a forked child: no log rather than a hang.
    None
}

fn deliver(level: c_int, text: &str) {
    let Some((f, opaque)) = sink() else { return };
    // One line, as every message of the library: control characters (a
    // newline or NUL in a path) escaped as the admin tool escapes them.
    let Ok(text) = CString::new(crate::rules::printable(text)) else {
        return;
    };
    // SAFETY: the function and its opaque pointer were handed over by
    // vircgroup_v2_set_log_func; the message outlives the call.
    unsafe { f(level, text.as_ptr(), opaque as *mut c_void) };
}

/// A C call in progress on this thread: its log messages wait until it
/// (the outermost, when calls nest through the callback) is dropped, when
/// no lock of the library is held any more.
pub struct Call(());

impl Call {
    /// Marks the start of a C call.
    pub fn enter() -> Call {
        DEPTH.with(|d| d.set(d.get() + 1));
        Call(())
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        let depth = DEPTH.with(|d| {
            d.set(d.get() - 1);
            d.get()
        });
        if depth > 0 {
            return;
        }
        // During thread exit the queue may be gone: its messages with it.
        let pending = PENDING
            .try_with(|p| std::mem::take(&mut *p.borrow_mut()))
            .unwrap_or_default();
        for (level, text) in pending {
            deliver(level, &text);
        }
    }
}

struct CLogger;

impl log::Log for CLogger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        FUNC.load(Ordering::Relaxed) != 0
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // libvirt's virLogPriority.
        let level = match record.level() {
            log::Level::Error => 4,
            log::Level::Warn => 3,
            log::Level::Info => 2,
            log::Level::Debug | log::Level::Trace => 1,
        };
        let text = record.args().to_string();
        if DEPTH.with(Cell::get) == 0 {
            deliver(level, &text);
        } else {
            let _ = PENDING.try_with(|p| p.borrow_mut().push((level, text)));
        }
    }

    fn flush(&self) {}
}
