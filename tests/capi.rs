// SPDX-License-Identifier: LGPL-2.1-or-later
//! The C boundary from Rust: every bad input of docs/API.md fails with -1 and
//! EINVAL (or the failing call's errno), a message naming what was wrong,
//! and no change to the rules.

mod common;

use ::vircgroup_v2_devices::capi::*;
use ::vircgroup_v2_devices::{rules, sys};
use common::{capi_list as list, *};
use std::ffi::{CStr, CString};
use std::os::fd::IntoRawFd;
use std::ptr;

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap()
}

fn state(path: &CStr) -> vircgroup_v2_devices {
    let mut out = vircgroup_v2_devices {
        mapfd: 7,
        progfd: 7,
        count: 7,
        max: 7,
    };
    // SAFETY: valid C string and out pointer.
    assert_eq!(
        unsafe { vircgroup_v2_devices_get_state(path.as_ptr(), &mut out) },
        0
    );
    out
}

/// Asserts a failed call: `ret` -1, `errno`, a message containing `word`.
fn assert_fails(what: &str, ret: i32, want_errno: i32, word: &str) {
    let e = errno();
    let msg = last_error();
    assert_eq!(ret, -1, "{what}: returned {ret}");
    assert_eq!(e, want_errno, "{what}: errno {e}, message {msg:?}");
    assert!(
        msg.contains(word),
        "{what}: message {msg:?} does not name {word:?}"
    );
}

#[test]
fn pure_functions_match_libvirt() {
    assert_eq!(vircgroup_v2_devices_get_key(1, 3), 0x0000_0001_0000_0003);
    assert_eq!(
        vircgroup_v2_devices_get_perms(VIRCGROUP_DEVICE_RW, b'c' as _),
        0x0006_0002
    );
    assert_eq!(vircgroup_v2_devices_get_key(136, -1), 0x0000_0088_ffff_ffff);
    assert_eq!(vircgroup_v2_devices_get_key(-1, -1), u64::MAX);
    assert_eq!(
        vircgroup_v2_devices_get_perms(VIRCGROUP_DEVICE_RWM, b'b' as _),
        0x0007_0001
    );
    assert_eq!(
        vircgroup_v2_devices_get_perms(VIRCGROUP_DEVICE_READ, b'a' as _),
        0x0002_0003
    );
    assert_eq!(std::mem::size_of::<vircgroup_v2_devices>(), 24);
}

#[test]
fn bad_inputs_fail_with_a_message_and_change_nothing() {
    let Some(mount) = privileged() else { return };
    let cg = Scratch::new(&mount);
    let path = CString::new(cg.p()).unwrap();
    let p = path.as_ptr();
    let c = |s: &str| CString::new(s).unwrap();
    // SAFETY (all calls below): every pointer is NULL or a valid C string.
    unsafe {
        assert_eq!(
            vircgroup_v2_allow_device(p, b'c' as _, 1, 3, VIRCGROUP_DEVICE_RW),
            0
        );
        assert_eq!(
            vircgroup_v2_allow_device(p, b'b' as _, 8, -1, VIRCGROUP_DEVICE_READ),
            0
        );
    }
    let before = list(&path);
    let state_before = state(&path);
    let dev = |t: u8, ma, mi, perms| {
        // SAFETY: valid path.
        unsafe { vircgroup_v2_allow_device(p, t as _, ma, mi, perms) }
    };
    let deny = |t: u8, ma, mi, perms| {
        // SAFETY: valid path.
        unsafe { vircgroup_v2_deny_device(p, t as _, ma, mi, perms) }
    };
    for (name, f) in [
        ("allow", &dev as &dyn Fn(u8, i32, i32, i32) -> i32),
        ("deny", &deny),
    ] {
        assert_fails(name, f(b'x', 1, 3, 1), libc::EINVAL, "device type 'x'");
        assert_fails(name, f(0, 1, 3, 1), libc::EINVAL, "device type");
        assert_fails(name, f(b'c', 4096, 3, 1), libc::EINVAL, "major number 4096");
        assert_fails(name, f(b'c', -2, 3, 1), libc::EINVAL, "major number -2");
        assert_fails(
            name,
            f(b'c', 1, 1_048_576, 1),
            libc::EINVAL,
            "minor number 1048576",
        );
        assert_fails(name, f(b'c', 1, -5, 1), libc::EINVAL, "minor number -5");
        assert_fails(name, f(b'c', 1, 3, 0), libc::EINVAL, "permissions 0");
        assert_fails(name, f(b'c', 1, 3, 8), libc::EINVAL, "permissions 8");
        assert_fails(name, f(b'c', 1, 3, -1), libc::EINVAL, "permissions -1");
    }
    // SAFETY (all calls below): every pointer is NULL or a valid C string.
    unsafe {
        assert_fails(
            "allow_all 0",
            vircgroup_v2_allow_all_devices(p, 0),
            libc::EINVAL,
            "permissions 0",
        );
        assert_fails(
            "allow_all 9",
            vircgroup_v2_allow_all_devices(p, 9),
            libc::EINVAL,
            "permissions 9",
        );
        assert_fails(
            "check",
            vircgroup_v2_devices_check(p, b'q' as _, 1, 3, 1),
            libc::EINVAL,
            "device type 'q'",
        );
        assert_fails(
            "path NULL dev",
            vircgroup_v2_allow_device_path(p, ptr::null(), 3),
            libc::EINVAL,
            "dev_path is NULL",
        );
        let null = c("/dev/null");
        assert_fails(
            "path perms",
            vircgroup_v2_deny_device_path(p, null.as_ptr(), 0),
            libc::EINVAL,
            "permissions 0",
        );
        assert_fails(
            "get_state NULL",
            vircgroup_v2_devices_get_state(p, ptr::null_mut()),
            libc::EINVAL,
            "out is NULL",
        );
        // A path that is not a device node: 1, nothing changes.
        let notdev = c("/proc/self/status");
        assert_eq!(vircgroup_v2_allow_device_path(p, notdev.as_ptr(), 3), 1);
        let missing = c("/nonexistent-vcg2/dev");
        assert_fails(
            "path missing",
            vircgroup_v2_allow_device_path(p, missing.as_ptr(), 3),
            libc::ENOENT,
            "/nonexistent-vcg2/dev",
        );
    }
    assert_eq!(list(&path), before);
    assert_eq!(state(&path), state_before);
}

#[test]
fn bad_group_paths_are_refused_by_every_function() {
    let Some(mount) = privileged() else { return };
    let tmp = Nodes::new();
    let cases: Vec<(Option<CString>, i32, String)> = vec![
        (None, libc::EINVAL, "group_path is NULL".into()),
        (
            Some(CString::new("").unwrap()),
            libc::EINVAL,
            "empty".into(),
        ),
        (
            Some(CString::new("relative/cg").unwrap()),
            libc::EINVAL,
            "not absolute".into(),
        ),
        (
            Some(CString::new(mount.join("vcg2-missing-xyz").to_str().unwrap()).unwrap()),
            libc::ENOENT,
            "vcg2-missing-xyz".into(),
        ),
        (
            Some(CString::new(tmp.dir.to_str().unwrap()).unwrap()),
            libc::EINVAL,
            "not on a cgroup v2 filesystem".into(),
        ),
    ];
    let dev_null = CString::new("/dev/null").unwrap();
    for (path, want, word) in &cases {
        let p = path.as_ref().map_or(ptr::null(), |s| s.as_ptr());
        type Call<'a> = (&'a str, Box<dyn Fn() -> i32 + 'a>);
        let n = dev_null.as_ptr();
        // SAFETY (all calls below): every pointer is NULL or a valid C string.
        let calls: Vec<Call> = vec![
            (
                "detect",
                Box::new(|| unsafe { vircgroup_v2_devices_detect_prog(p) }),
            ),
            (
                "create",
                Box::new(|| unsafe { vircgroup_v2_devices_create_prog(p) }),
            ),
            (
                "prepare",
                Box::new(|| unsafe { vircgroup_v2_devices_prepare_prog(p) }),
            ),
            (
                "remove",
                Box::new(|| unsafe { vircgroup_v2_devices_remove_prog(p) }),
            ),
            (
                "detach",
                Box::new(|| unsafe { vircgroup_v2_devices_detach_prog(p) }),
            ),
            (
                "allow",
                Box::new(|| unsafe { vircgroup_v2_allow_device(p, b'c' as _, 1, 3, 1) }),
            ),
            (
                "deny",
                Box::new(|| unsafe { vircgroup_v2_deny_device(p, b'c' as _, 1, 3, 1) }),
            ),
            (
                "allow_all",
                Box::new(|| unsafe { vircgroup_v2_allow_all_devices(p, 7) }),
            ),
            (
                "deny_all",
                Box::new(|| unsafe { vircgroup_v2_deny_all_devices(p) }),
            ),
            (
                "allow_path",
                Box::new(|| unsafe { vircgroup_v2_allow_device_path(p, n, 3) }),
            ),
            (
                "deny_path",
                Box::new(|| unsafe { vircgroup_v2_deny_device_path(p, n, 3) }),
            ),
            (
                "allow_path of a non-device",
                Box::new(|| unsafe {
                    vircgroup_v2_allow_device_path(p, c"/proc/self/status".as_ptr(), 3)
                }),
            ),
            (
                "check",
                Box::new(|| unsafe { vircgroup_v2_devices_check(p, b'c' as _, 1, 3, 1) }),
            ),
        ];
        for (name, call) in &calls {
            assert_fails(&format!("{name} {path:?}"), call(), *want, word);
        }
        // SAFETY: as above; `out` is writable.
        unsafe {
            let mut out = std::mem::zeroed();
            assert_fails(
                "get_state",
                vircgroup_v2_devices_get_state(p, &mut out),
                *want,
                word,
            );
            assert!(vircgroup_v2_devices_list(p).is_null());
            assert_eq!(errno(), *want);
            assert!(!vircgroup_v2_devices_available(p));
        }
    }
}

#[test]
fn attach_prog_checks_the_map_and_always_takes_the_fd() {
    let Some(mount) = privileged() else { return };
    let cg = Scratch::new(&mount);
    let path = CString::new(cg.p()).unwrap();
    let p = path.as_ptr();
    // What an fd refers to: its link and, for a BPF object, its id. Other
    // tests run in this process and may reuse a closed fd's number, so
    // "closed" means "no longer this object".
    let identity = |fd: i32| {
        let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap_or_default();
        let id = info
            .lines()
            .find(|l| l.starts_with("map_id:"))
            .unwrap_or("");
        Some(format!("{} {id}", link.display()))
    };
    let track = |fd: i32| (fd, identity(fd).expect("an open fd"));
    let closed = |(fd, id): &(i32, String)| identity(*fd).as_ref() != Some(id);
    let hash = |k, v, max| {
        sys::map_create(sys::BPF_MAP_TYPE_HASH, k, v, max, "t")
            .unwrap()
            .into_raw_fd()
    };
    // SAFETY (all calls below): valid path; each fd is handed over.
    unsafe {
        assert_eq!(
            vircgroup_v2_allow_device(p, b'c' as _, 1, 3, VIRCGROUP_DEVICE_RW),
            0
        );
        let before = list(&path);
        let st = state(&path);
        let old_map = track(st.mapfd);

        let (r, w) = nix::unistd::pipe().unwrap();
        let pipe = track(r.into_raw_fd());
        assert_fails(
            "pipe",
            vircgroup_v2_devices_attach_prog(p, pipe.0, 64),
            libc::EINVAL,
            "not a BPF map",
        );
        assert!(closed(&pipe));
        drop(w);

        let map = track(hash(4, 4, 64));
        assert_fails(
            "shape",
            vircgroup_v2_devices_attach_prog(p, map.0, 64),
            libc::EINVAL,
            "8-byte keys",
        );
        assert!(closed(&map));

        let map = track(hash(8, 4, 32));
        assert_fails(
            "max",
            vircgroup_v2_devices_attach_prog(p, map.0, 64),
            libc::EINVAL,
            "max 64",
        );
        assert!(closed(&map));

        // libvirt's value encoding is not ours.
        let map = track(hash(8, 4, 64));
        let fd = std::os::fd::BorrowedFd::borrow_raw(map.0);
        sys::map_update(fd, rules::get_key(1, 3), rules::get_perms(3, b'c')).unwrap();
        assert_fails(
            "encoding",
            vircgroup_v2_devices_attach_prog(p, map.0, 64),
            libc::EINVAL,
            "not a rule",
        );
        assert!(closed(&map));

        assert_fails(
            "negative",
            vircgroup_v2_devices_attach_prog(p, -1, 64),
            libc::EINVAL,
            "mapfd -1",
        );
        assert_fails(
            "not open",
            vircgroup_v2_devices_attach_prog(p, 1_000_000, 64),
            libc::EINVAL,
            "not an open",
        );

        let map = track(hash(8, 4, 64));
        assert_fails(
            "bad path",
            vircgroup_v2_devices_attach_prog(c"relative".as_ptr(), map.0, 64),
            libc::EINVAL,
            "not absolute",
        );
        assert!(closed(&map));

        assert_eq!(list(&path), before);
        assert_eq!(state(&path), st);

        // A good map with one rule in our encoding replaces the program.
        let map = track(hash(8, 4, 16));
        let r = rules::Rule::new(b'b', 8, 0, 1).unwrap();
        sys::map_update(
            std::os::fd::BorrowedFd::borrow_raw(map.0),
            r.key(),
            r.value(),
        )
        .unwrap();
        let old_ids = cg.attached();
        assert_eq!(
            vircgroup_v2_devices_attach_prog(p, map.0, 16),
            0,
            "{}",
            last_error()
        );
        let s = state(&path);
        assert_eq!((s.mapfd, s.count, s.max), (map.0, 1, 16));
        assert!(closed(&old_map), "the old map fd was closed");
        let ids = cg.attached();
        assert_eq!(ids.len(), 1);
        assert_ne!(ids, old_ids);
        assert_eq!(list(&path), "b 8:0 r\n");
    }
}

/// The log function is one per process: tests that set it take turns.
static LOG_FUNC: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn last_error_is_per_thread_and_logs_reach_the_callback() {
    use std::sync::Mutex;
    let _turn = LOG_FUNC.lock().unwrap_or_else(|e| e.into_inner());
    static LOGS: Mutex<Vec<(i32, String)>> = Mutex::new(Vec::new());
    unsafe extern "C" fn sink(level: i32, msg: *const libc::c_char, opaque: *mut libc::c_void) {
        assert_eq!(opaque as usize, 42);
        // SAFETY: the library passes a valid C string.
        let msg = unsafe { CStr::from_ptr(msg) }
            .to_string_lossy()
            .into_owned();
        LOGS.lock().unwrap().push((level, msg));
    }
    vircgroup_v2_set_log_func(Some(sink), 42 as *mut libc::c_void);
    // Both threads fail, then both read their message while the other's
    // error is also set.
    let barrier = std::sync::Barrier::new(2);
    let (e1, e2) = std::thread::scope(|s| {
        let t1 = s.spawn(|| {
            // SAFETY: valid C string.
            unsafe { vircgroup_v2_devices_detect_prog(c"vcg2-log-while-set".as_ptr()) };
            barrier.wait();
            last_error()
        });
        let t2 = s.spawn(|| {
            // SAFETY: valid C string.
            unsafe { vircgroup_v2_allow_device(c"/".as_ptr(), b'z' as _, 1, 1, 1) };
            barrier.wait();
            last_error()
        });
        (t1.join().unwrap(), t2.join().unwrap())
    });
    assert!(e1.contains("'vcg2-log-while-set' is not absolute"), "{e1}");
    assert!(e2.contains("device type 'z'"), "{e2}");
    vircgroup_v2_set_log_func(None, ptr::null_mut());
    // SAFETY: valid C string.
    unsafe { vircgroup_v2_devices_detect_prog(c"vcg2-log-after-unset".as_ptr()) };
    let logs = LOGS.lock().unwrap();
    assert!(
        logs.iter()
            .any(|(l, m)| *l == 1 && m.contains("vcg2-log-while-set")),
        "{logs:?}"
    );
    assert!(
        !logs.iter().any(|(_, m)| m.contains("vcg2-log-after-unset")),
        "{logs:?}"
    );
}

#[test]
fn list_prints_the_lines_cgroup_v1_shows() {
    let Some(mount) = privileged() else { return };
    let cg = Scratch::new(&mount);
    let path = CString::new(cg.p()).unwrap();
    let p = path.as_ptr();
    // SAFETY: `p` is a valid C string for every call.
    unsafe {
        assert_eq!(list(&path), "a *:* rwm\n", "no program: v1's default allow");
        assert_eq!(vircgroup_v2_deny_all_devices(p), 0, "{}", last_error());
        assert_eq!(list(&path), "");
        // 'a' on numbers is both types: two lines, never a merged 'a 8:* m'.
        assert_eq!(vircgroup_v2_allow_device(p, b'a' as _, 8, -1, 4), 0);
        assert_eq!(vircgroup_v2_allow_device(p, b'c' as _, 1, 3, 3), 0);
        assert_eq!(list(&path), "b 8:* m\nc 1:3 rw\nc 8:* m\n");
        // allow_all as libvirt's v1 backend writes it: b *:* and c *:*.
        assert_eq!(vircgroup_v2_allow_all_devices(p, 7), 0);
        assert_eq!(
            list(&path),
            "b 8:* m\nb *:* rwm\nc 1:3 rw\nc 8:* m\nc *:* rwm\n"
        );
        assert_eq!(vircgroup_v2_deny_device(p, b'b' as _, -1, -1, 7), 0);
        assert_eq!(list(&path), "b 8:* m\nc 1:3 rw\nc 8:* m\nc *:* rwm\n");
        assert_eq!(vircgroup_v2_devices_detach_prog(p), 0);
        assert_eq!(list(&path), "a *:* rwm\n");
    }
}

/// A cgroup whose name is bytes that are not UTF-8 (the kernel takes any
/// byte but '/' and NUL): every call works on it, the kernel enforces its
/// rules, and a message shows those bytes escaped.
#[test]
fn a_cgroup_named_with_bytes_that_are_not_utf8_works() {
    use std::os::unix::ffi::OsStrExt;
    let Some(mount) = privileged() else { return };
    let cg = Scratch::named(&mount, b"vcg2-\xff\xfe-");
    assert!(cg.path.to_str().is_none(), "the name is not UTF-8");
    let path = CString::new(cg.path.as_os_str().as_bytes()).unwrap();
    let p = path.as_ptr();
    // SAFETY (all calls below): every pointer is a valid C string.
    unsafe {
        assert_eq!(vircgroup_v2_devices_detect_prog(p), 0, "{}", last_error());
        assert_eq!(vircgroup_v2_deny_all_devices(p), 0, "{}", last_error());
        assert_eq!(
            vircgroup_v2_allow_device(p, b'c' as _, 1, 3, VIRCGROUP_DEVICE_RW),
            0,
            "{}",
            last_error()
        );
        assert_eq!(
            vircgroup_v2_allow_device_path(p, c"/dev/zero".as_ptr(), VIRCGROUP_DEVICE_READ),
            0,
            "{}",
            last_error()
        );
        assert_eq!(
            vircgroup_v2_devices_check(p, b'c' as _, 1, 3, VIRCGROUP_DEVICE_RW),
            1
        );
        assert_eq!(
            vircgroup_v2_devices_check(p, b'c' as _, 1, 5, VIRCGROUP_DEVICE_WRITE),
            0
        );
    }
    assert_eq!(list(&path), "c 1:3 rw\nc 1:5 r\n");
    assert_eq!(state(&path).count, 2);
    assert!(cg.allowed("rw:/dev/null"));
    assert!(cg.allowed("r:/dev/zero"));
    assert!(!cg.allowed("w:/dev/zero"));
    // A message names the cgroup with its bytes escaped.
    let missing = CString::new([path.as_bytes(), b"/gone"].concat()).unwrap();
    // SAFETY: a valid C string.
    let ret = unsafe { vircgroup_v2_devices_detect_prog(missing.as_ptr()) };
    assert_fails("detect", ret, libc::ENOENT, "vcg2-\\xff\\xfe-");
    // SAFETY: a valid C string.
    assert_eq!(unsafe { vircgroup_v2_devices_remove_prog(p) }, 0);
}

/// Control characters in a cgroup's name (tab, carriage return, escape;
/// the kernel refuses a newline there) and a newline in a path given are
/// escaped in `last_error` and in log messages, as the admin tool escapes
/// them: every message is one line, and no path can forge another one.
#[test]
fn messages_escape_control_characters_in_paths() {
    use std::os::unix::ffi::OsStrExt;
    use std::sync::Mutex;
    static LOGS: Mutex<Vec<String>> = Mutex::new(Vec::new());
    unsafe extern "C" fn sink(_: i32, msg: *const libc::c_char, _: *mut libc::c_void) {
        // SAFETY: the library passes a valid C string.
        let msg = unsafe { CStr::from_ptr(msg) }
            .to_string_lossy()
            .into_owned();
        LOGS.lock().unwrap().push(msg);
    }
    let Some(mount) = privileged() else { return };
    let _turn = LOG_FUNC.lock().unwrap_or_else(|e| e.into_inner());
    let cg = Scratch::named(&mount, b"vcg2-tab\tcr\resc\x1b-");
    let path = CString::new(cg.path.as_os_str().as_bytes()).unwrap();
    let missing = CString::new([path.as_bytes(), b"/no\nsuch"].concat()).unwrap();
    vircgroup_v2_set_log_func(Some(sink), ptr::null_mut());
    // SAFETY (all calls below): every pointer is a valid C string.
    let (denied, allowed, failed) = unsafe {
        (
            vircgroup_v2_deny_all_devices(path.as_ptr()),
            vircgroup_v2_allow_device(path.as_ptr(), b'c' as _, 1, 3, VIRCGROUP_DEVICE_RW),
            vircgroup_v2_allow_device(missing.as_ptr(), b'c' as _, 1, 3, VIRCGROUP_DEVICE_RW),
        )
    };
    let msg = last_error();
    vircgroup_v2_set_log_func(None, ptr::null_mut());
    assert_eq!((denied, allowed, failed), (0, 0, -1), "{msg}");
    let raw = |m: &str| m.contains(['\n', '\t', '\r', '\x1b']);
    assert!(!raw(&msg), "{msg:?}");
    let escaped = "vcg2-tab\\tcr\\resc\\x1b-";
    assert!(msg.contains(escaped), "{msg:?}");
    assert!(msg.contains("no\\nsuch"), "{msg:?}");
    let logs = std::mem::take(&mut *LOGS.lock().unwrap());
    assert!(
        logs.iter().filter(|m| m.contains(escaped)).count() >= 2,
        "{logs:?}"
    );
    assert!(logs.iter().all(|m| !raw(m)), "{logs:?}");
}
