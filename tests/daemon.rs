// SPDX-License-Identifier: LGPL-2.1-or-later
//! Living inside a daemon (docs/API.md "Living inside a daemon"):
//! the library as libvirt's virtqemud uses it, multithreaded, forking,
//! beside other writers, for months. Each scenario is written the way a
//! daemon would hit it: several threads, a forked child, a second process,
//! a thread-exit destructor, a bind mount. Those that could hang or abort
//! the process run in a child process of this test binary, with a
//! deadline: a hang fails the test instead of blocking.
mod common;

use ::vircgroup_v2_devices::capi::*;
use ::vircgroup_v2_devices::rules::{self, READ, RW, WRITE};
use ::vircgroup_v2_devices::sys;
use common::*;
use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

fn last_error() -> String {
    // SAFETY: the library returns a valid NUL-terminated string.
    unsafe { CStr::from_ptr(vircgroup_v2_last_error()) }
        .to_string_lossy()
        .into_owned()
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn state(p: &CStr) -> vircgroup_v2_devices {
    let mut s = vircgroup_v2_devices {
        mapfd: -2,
        progfd: -2,
        count: -2,
        max: -2,
    };
    // SAFETY: valid C string and out pointer.
    assert_eq!(
        unsafe { vircgroup_v2_devices_get_state(p.as_ptr(), &mut s) },
        0
    );
    s
}

fn allow(p: &CStr, ty: u8, major: i32, minor: i32, perms: i32) -> i32 {
    // SAFETY: valid C string.
    unsafe { vircgroup_v2_allow_device(p.as_ptr(), ty as _, major, minor, perms) }
}

fn deny(p: &CStr, ty: u8, major: i32, minor: i32, perms: i32) -> i32 {
    // SAFETY: valid C string.
    unsafe { vircgroup_v2_deny_device(p.as_ptr(), ty as _, major, minor, perms) }
}

fn list(p: &CStr) -> String {
    // SAFETY: valid C string; the result is malloc'ed and freed here.
    unsafe {
        let text = vircgroup_v2_devices_list(p.as_ptr());
        assert!(!text.is_null(), "list: {}", last_error());
        let s = CStr::from_ptr(text).to_string_lossy().into_owned();
        libc::free(text.cast());
        s
    }
}

/// Runs the ignored test `scenario` of this binary in a child process, with
/// `env`, and fails unless it passes within `deadline` (killed then).
fn isolated(scenario: &str, env: &[(&str, &str)], deadline: Duration) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        scenario,
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = ChildGuard(cmd.spawn().unwrap());
    let started = Instant::now();
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            assert!(status.success(), "{scenario}: {status}");
            return;
        }
        assert!(
            started.elapsed() < deadline,
            "{scenario} did not finish within {deadline:?}: it hangs"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

// --------------------------------------------------------------- fds

/// attach_prog given the map fd get_state returned: refused with EINVAL,
/// nothing closed, the state unchanged. A later remove_prog closes only
/// the library's own fds, never a caller's that reused a number.
#[test]
fn attach_prog_refuses_an_fd_the_library_holds() {
    let Some(mount) = privileged() else { return };
    let cg = Scratch::new(&mount);
    let p = c(cg.p());
    assert_eq!(allow(&p, b'c', 1, 3, RW), 0, "{}", last_error());
    let before = state(&p);
    for fd in [before.mapfd, before.progfd] {
        // SAFETY: valid C string; the fd is the library's (refused).
        let ret = unsafe { vircgroup_v2_devices_attach_prog(p.as_ptr(), fd, 64) };
        assert_eq!((ret, errno()), (-1, libc::EINVAL), "fd {fd}");
        assert!(
            last_error().contains("the library holds"),
            "{}",
            last_error()
        );
        // SAFETY: F_GETFD only reads the flags.
        assert!(
            unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0,
            "fd {fd} closed"
        );
    }
    let after = state(&p);
    assert_eq!(
        (after.mapfd, after.progfd, after.count, after.max),
        (before.mapfd, before.progfd, before.count, before.max)
    );
    assert_eq!(list(&p), "c 1:3 rw\n");
    // remove_prog, then a caller's fd takes the old number: the library
    // never closes it.
    // SAFETY: valid C string.
    assert_eq!(unsafe { vircgroup_v2_devices_remove_prog(p.as_ptr()) }, 0);
    let mine = std::fs::File::open("/dev/null").unwrap();
    let n = mine.as_raw_fd();
    // SAFETY: valid C string.
    assert_eq!(unsafe { vircgroup_v2_devices_remove_prog(p.as_ptr()) }, 0);
    assert!(std::fs::read_link(format!("/proc/self/fd/{n}")).is_ok());
    drop(mine);
}

/// The VM's cgroup removed before remove_prog (systemd removes the scope
/// when QEMU exits): remove_prog returns 0 and releases every fd, 1,000
/// lifecycles over (in a process of its own, so that no other test's fds
/// are counted).
#[test]
fn remove_prog_after_the_cgroup_is_gone_leaks_nothing() {
    if privileged().is_none() {
        return;
    }
    isolated("scenario_gone_lifecycles", &[], Duration::from_secs(300));
}

#[test]
#[ignore = "run by remove_prog_after_the_cgroup_is_gone_leaks_nothing"]
fn scenario_gone_lifecycles() {
    let mount = privileged().unwrap();
    let _beacon = hold_beacon(&mount);
    let path = mount.join(format!("vcg2-test-gone-{}", std::process::id()));
    let p = c(path.to_str().unwrap());
    // Warm up (one-time probes, tags), then count.
    std::fs::create_dir(&path).unwrap();
    assert_eq!(allow(&p, b'c', 1, 3, RW), 0, "{}", last_error());
    std::fs::remove_dir(&path).unwrap();
    // SAFETY: valid C string.
    assert_eq!(unsafe { vircgroup_v2_devices_remove_prog(p.as_ptr()) }, 0);
    let fds = fd_count();
    let started = Instant::now();
    for i in 0..1000 {
        std::fs::create_dir(&path).unwrap();
        let guard = RemoveOnDrop(&path);
        // SAFETY: valid C string.
        assert_eq!(
            unsafe { vircgroup_v2_deny_all_devices(p.as_ptr()) },
            0,
            "{}",
            last_error()
        );
        assert_eq!(allow(&p, b'c', 136, -1, RW), 0, "{}", last_error());
        drop(guard);
        // SAFETY: valid C string.
        let ret = unsafe { vircgroup_v2_devices_remove_prog(p.as_ptr()) };
        assert_eq!(ret, 0, "lifecycle {i}: {}", last_error());
    }
    assert_eq!(fd_count(), fds, "fds leaked: {:#?}", fd_targets());
    // Gone and never known: the usual error.
    // SAFETY: valid C string.
    let ret = unsafe { vircgroup_v2_devices_remove_prog(p.as_ptr()) };
    assert_eq!((ret, errno()), (-1, libc::ENOENT));
    eprintln!(
        "1000 VM lifecycles with the cgroup removed first in {:.1}s, {fds} fds before and after",
        started.elapsed().as_secs_f64()
    );
}

struct RemoveOnDrop<'a>(&'a Path);

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(self.0);
    }
}

// --------------------------------------------------------------- other writers

/// Another process (the admin tool) changes the cgroup the daemon holds:
/// the daemon's count, check and list follow the kernel, its next allow
/// neither fails for want of room it thought it had nor reverts the
/// other's change.
#[test]
fn a_second_writer_is_seen_at_once() {
    let Some(mount) = privileged() else { return };
    let cg = Scratch::new(&mount);
    let p = c(cg.p());
    // SAFETY: valid C string.
    assert_eq!(unsafe { vircgroup_v2_deny_all_devices(p.as_ptr()) }, 0);
    for minor in 0..63 {
        assert_eq!(allow(&p, b'c', 300, minor, READ), 0, "{}", last_error());
    }
    assert_eq!((state(&p).count, state(&p).max), (63, 64));
    // The admin adds the 64th rule and widens one of the daemon's.
    tool(&["allow", cg.p(), "c 301:0 r"]);
    tool(&["allow", cg.p(), "c 300:5 w"]);
    assert_eq!(state(&p).count, 64, "the admin's rule is counted");
    // SAFETY: valid C string.
    let check = |major, minor, perms| unsafe {
        vircgroup_v2_devices_check(p.as_ptr(), b'c' as _, major, minor, perms)
    };
    assert_eq!(check(301, 0, READ), 1, "check sees the admin's rule");
    assert_eq!(check(300, 5, RW), 1, "check sees the admin's w");
    // The daemon's next allows: growth instead of E2BIG, no revert.
    assert_eq!(allow(&p, b'c', 300, 63, READ), 0, "{}", last_error());
    assert_eq!(allow(&p, b'c', 300, 5, rules::MKNOD), 0, "{}", last_error());
    let text = list(&p);
    assert!(text.contains("c 300:5 rwm\n"), "{text}");
    assert!(text.contains("c 301:0 r\n"), "{text}");
    assert_eq!(text.lines().count(), 65);
    let s = state(&p);
    assert_eq!((s.count, s.max), (65, 128));
    cg.expect(&[
        (format!("rw:{}", node(&cg, 300, 5)), None, true),
        (format!("r:{}", node(&cg, 301, 0)), None, true),
        (format!("r:{}", node(&cg, 301, 1)), None, false),
    ]);
}

/// A device node for `c major:minor` next to nothing else, kept for the
/// test's life.
fn node(_cg: &Scratch, major: u64, minor: u64) -> String {
    type Made = std::collections::HashMap<(u64, u64), String>;
    static NODES: Mutex<Option<(Nodes, Made)>> = Mutex::new(None);
    let mut nodes = NODES.lock().unwrap_or_else(|e| e.into_inner());
    let (n, made) = nodes.get_or_insert_with(|| (Nodes::new(), Default::default()));
    made.entry((major, minor))
        .or_insert_with(|| n.node(&format!("c{major}-{minor}"), 'c', major, minor))
        .clone()
}

/// The same cgroup reached through a bind mount of it and through a
/// symlink is one state.
#[test]
fn a_bind_mount_and_a_symlink_are_the_same_state() {
    let Some(mount) = privileged() else { return };
    let cg = Scratch::new(&mount);
    let dir = Nodes::new();
    let bound = dir.dir.join("bound");
    std::fs::create_dir(&bound).unwrap();
    let b = c(bound.to_str().unwrap());
    let src = c(cg.p());
    // SAFETY: valid C strings; a bind mount of the scratch cgroup, undone
    // below (and by the guard on failure).
    let r = unsafe {
        libc::mount(
            src.as_ptr(),
            b.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    };
    assert_eq!(r, 0, "mount --bind: {}", std::io::Error::last_os_error());
    struct Unmount(CString);
    impl Drop for Unmount {
        fn drop(&mut self) {
            // SAFETY: valid C string.
            unsafe { libc::umount2(self.0.as_ptr(), libc::MNT_DETACH) };
        }
    }
    let _u = Unmount(b.clone());
    let link = dir.dir.join("link");
    std::os::unix::fs::symlink(&cg.path, &link).unwrap();
    let l = c(link.to_str().unwrap());
    let p = c(cg.p());
    assert_eq!(allow(&b, b'c', 1, 3, RW), 0, "{}", last_error());
    assert_eq!(allow(&l, b'c', 1, 5, READ), 0, "{}", last_error());
    assert_eq!(allow(&p, b'c', 1, 7, WRITE), 0, "{}", last_error());
    let want = "c 1:3 rw\nc 1:5 r\nc 1:7 w\n";
    for path in [&b, &l, &p] {
        assert_eq!(list(path), want);
    }
    let (sb, sl, sp) = (state(&b), state(&l), state(&p));
    assert_eq!((sb.mapfd, sb.count), (sp.mapfd, sp.count));
    assert_eq!((sl.mapfd, sl.count), (sp.mapfd, 3));
    assert_eq!(cg.attached().len(), 1);
    // The bind mount is not the cgroup2 root: changes through it work.
    // SAFETY: valid C string.
    assert_eq!(
        unsafe { vircgroup_v2_deny_all_devices(b.as_ptr()) },
        0,
        "{}",
        last_error()
    );
    assert_eq!(list(&p), "");
}

/// check and list on a cgroup set up by libvirt's C code read libvirt's
/// map: its program stays, and what libvirt's C code then writes into its
/// own map takes effect.
#[test]
fn check_and_list_leave_libvirts_program_alone() {
    let Some(mount) = privileged() else { return };
    let cg = Scratch::new(&mount);
    let p = c(cg.p());
    let id = attach_like_libvirt(&cg.path, 64, &[(b'c', 1, 3, RW)]);
    assert_eq!(list(&p), "c 1:3 rw\n");
    // SAFETY: valid C string.
    assert_eq!(
        unsafe { vircgroup_v2_devices_check(p.as_ptr(), b'c' as _, 1, 3, RW) },
        1
    );
    assert_eq!(cg.attached(), vec![id], "libvirt's program replaced");
    assert_eq!(state(&p).mapfd, -1, "nothing held");
    // libvirt's C code writes its next rule into its map.
    let prog = sys::prog_get_fd_by_id(id).unwrap();
    let info = sys::prog_info(prog.as_fd()).unwrap();
    let map = sys::map_get_fd_by_id(info.map_ids[0]).unwrap();
    sys::map_update(
        map.as_fd(),
        rules::get_key(1, 5),
        rules::get_perms(READ, b'c'),
    )
    .unwrap();
    assert_eq!(list(&p), "c 1:3 rw\nc 1:5 r\n");
    cg.expect(&[(format!("r:{}", node(&cg, 1, 5)), None, true)]);
    assert_eq!(cg.attached(), vec![id]);
}

// --------------------------------------------------------------- locks

static CALLBACK_PATH: Mutex<Option<CString>> = Mutex::new(None);
static CALLBACKS: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" fn reentrant_log(
    _level: libc::c_int,
    _m: *const libc::c_char,
    _o: *mut libc::c_void,
) {
    let n = CALLBACKS.fetch_add(1, Ordering::SeqCst);
    let path = CALLBACK_PATH.lock().unwrap().clone();
    if let Some(p) = path {
        if n < 3 {
            // The library, on the same cgroup, from inside its callback.
            let _ = list(&p);
            // SAFETY: valid C string.
            let _ = unsafe { vircgroup_v2_devices_check(p.as_ptr(), b'c' as _, 1, 3, READ) };
        } else if n == 3 {
            vircgroup_v2_set_log_func(None, std::ptr::null_mut());
        }
    }
}

/// The log callback may call the library on the same cgroup, and turn
/// itself off: no deadlock, and errno and last_error are the failing call's.
#[test]
fn the_log_callback_may_call_the_library() {
    if privileged().is_none() {
        return;
    }
    isolated("scenario_reentrant_log", &[], Duration::from_secs(60));
}

#[test]
#[ignore = "run by the_log_callback_may_call_the_library"]
fn scenario_reentrant_log() {
    let mount = privileged().unwrap();
    let cg = Scratch::new(&mount);
    let p = c(cg.p());
    *CALLBACK_PATH.lock().unwrap() = Some(p.clone());
    vircgroup_v2_set_log_func(Some(reentrant_log), std::ptr::null_mut());
    assert_eq!(allow(&p, b'c', 1, 3, RW), 0, "{}", last_error());
    assert_eq!(allow(&p, b'c', 1, 5, READ), 0, "{}", last_error());
    // A failing call whose callback calls the library: errno and the
    // message are still the failing call's.
    let ret = allow(&p, b'x', 1, 3, RW);
    assert_eq!((ret, errno()), (-1, libc::EINVAL));
    assert!(last_error().contains("device type"), "{}", last_error());
    assert!(CALLBACKS.load(Ordering::SeqCst) >= 4, "the callback ran");
    assert_eq!(list(&p), "c 1:3 rw\nc 1:5 r\n");
}

/// A slow call on one cgroup (stuck for 2 s or more inside a bpf(2) call,
/// its locks held) never holds up a call on another: under 10 ms, or four
/// times the slowest of the same calls alone on a slow machine.
#[test]
fn a_slow_call_on_one_cgroup_never_holds_up_another() {
    let Some(mount) = privileged() else { return };
    let (x, y) = (Scratch::new(&mount), Scratch::new(&mount));
    let (px, py) = (c(x.p()), c(y.p()));
    for p in [&px, &py] {
        // SAFETY: valid C string.
        assert_eq!(unsafe { vircgroup_v2_deny_all_devices(p.as_ptr()) }, 0);
        assert_eq!(allow(p, b'c', 1, 3, RW), 0);
    }
    // The same calls with nothing else going on: what "not held up" is
    // measured against on a slow machine (under QEMU's TCG a call alone
    // takes milliseconds).
    let mut alone = Duration::ZERO;
    for minor in 100..120 {
        let t = Instant::now();
        assert_eq!(allow(&py, b'c', 2, minor, READ), 0, "{}", last_error());
        list(&py);
        alone = alone.max(t.elapsed());
    }
    let bound = Duration::from_millis(10).max(alone * 4);
    // The slow call outlasts the 20 calls on Y measured below, however
    // slow the machine (a loaded TCG guest takes 100 ms a call).
    let stuck = Duration::from_secs(2).max(alone * 60);
    let slow = {
        let px = px.clone();
        std::thread::spawn(move || {
            sys::hook::delay(sys::cmd::PROG_QUERY, stuck);
            assert_eq!(allow(&px, b'c', 1, 5, READ), 0, "{}", last_error());
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let mut worst = Duration::ZERO;
    for minor in 0..20 {
        let t = Instant::now();
        assert_eq!(allow(&py, b'c', 2, minor, READ), 0, "{}", last_error());
        list(&py);
        worst = worst.max(t.elapsed());
    }
    assert!(!slow.is_finished(), "the slow call was not slow");
    slow.join().unwrap();
    assert!(
        worst < bound,
        "a call on Y took {worst:?} (alone {alone:?}): held up by X"
    );
    eprintln!("calls on Y while X was stuck: worst {worst:?} (alone {alone:?})");
}

// --------------------------------------------------------------- fork

/// A child forked while another thread holds a cgroup's lock (in a slow
/// call) never hangs calling the library on that cgroup: it works on its
/// own state once the other process's change is done.
#[test]
fn a_forked_child_never_hangs() {
    if privileged().is_none() {
        return;
    }
    isolated("scenario_fork", &[], Duration::from_secs(60));
}

#[test]
#[ignore = "run by a_forked_child_never_hangs"]
fn scenario_fork() {
    let mount = privileged().unwrap();
    let cg = Scratch::new(&mount);
    let p = c(cg.p());
    assert_eq!(allow(&p, b'c', 1, 3, RW), 0, "{}", last_error());
    let slow = {
        let p = p.clone();
        std::thread::spawn(move || {
            sys::hook::delay(sys::cmd::PROG_QUERY, Duration::from_secs(1));
            assert_eq!(allow(&p, b'c', 1, 5, READ), 0, "{}", last_error());
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: the child only calls the library and _exit()s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let ok = allow(&p, b'c', 1, 7, READ) == 0 && list(&p).contains("c 1:7 r");
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    let started = Instant::now();
    let status = loop {
        let mut status = 0;
        // SAFETY: waits for our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            break status;
        }
        if started.elapsed() > Duration::from_secs(20) {
            // SAFETY: our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("the forked child hangs");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child: {status:#x}"
    );
    slow.join().unwrap();
    assert_eq!(list(&p), "c 1:3 rw\nc 1:5 r\nc 1:7 r\n");
}

// --------------------------------------------------------------- thread exit

extern "C" fn call_at_thread_exit(value: *mut libc::c_void) {
    // SAFETY: the key's value is a leaked CString of the cgroup's path.
    let p = unsafe { CString::from_raw(value.cast()) };
    let bad = allow(&p, b'x', 1, 3, RW);
    // SAFETY: the library returns a valid string.
    let message = unsafe { CStr::from_ptr(vircgroup_v2_last_error()) };
    let good = allow(&p, b'c', 1, 9, READ);
    if bad != -1 || !message.to_string_lossy().contains("device type") || good != 0 {
        // SAFETY: ends the process with a status the parent reads.
        unsafe { libc::_exit(3) };
    }
}

/// A library call from a pthread key destructor at thread exit (after the
/// thread's Rust thread-locals may be gone) never aborts the process.
#[test]
fn a_call_from_a_thread_exit_destructor_does_not_abort() {
    if privileged().is_none() {
        return;
    }
    isolated("scenario_thread_exit", &[], Duration::from_secs(60));
}

#[test]
#[ignore = "run by a_call_from_a_thread_exit_destructor_does_not_abort"]
fn scenario_thread_exit() {
    let mount = privileged().unwrap();
    let cg = Scratch::new(&mount);
    let p = c(cg.p());
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: a key with a plain extern "C" destructor.
    assert_eq!(
        unsafe { libc::pthread_key_create(&mut key, Some(call_at_thread_exit)) },
        0
    );
    for first in [true, false] {
        let p = p.clone();
        std::thread::spawn(move || {
            if !first {
                // A thread that used the library (and its thread-locals)
                // before exiting.
                assert_eq!(allow(&p, b'c', 1, 3, RW), 0);
                assert_eq!(allow(&p, b'y', 1, 3, RW), -1);
            }
            // SAFETY: the value is a leaked CString, taken back by the
            // destructor.
            unsafe { libc::pthread_setspecific(key, p.into_raw().cast()) };
        })
        .join()
        .unwrap();
    }
    assert!(list(&p).contains("c 1:9 r\n"));
}

// --------------------------------------------------------------- the root

/// Mutating calls on the cgroup2 root, by its mount point or a bind mount
/// of it, fail with EINVAL and attach nothing.
#[test]
fn mutating_calls_on_the_cgroup2_root_fail() {
    let Some(mount) = privileged() else { return };
    let root = c(mount.to_str().unwrap());
    let before = ::vircgroup_v2_devices::cgroup::Cgroup::open(mount.to_str().unwrap())
        .unwrap()
        .attached()
        .unwrap();
    // SAFETY (all below): valid C strings.
    type Call<'a> = (&'a str, Box<dyn Fn() -> i32 + 'a>);
    let calls: Vec<Call> = vec![
        (
            "deny_all",
            Box::new(|| unsafe { vircgroup_v2_deny_all_devices(root.as_ptr()) }),
        ),
        ("allow", Box::new(|| allow(&root, b'c', 1, 3, RW))),
        ("deny", Box::new(|| deny(&root, b'c', 1, 3, RW))),
        (
            "allow_all",
            Box::new(|| unsafe { vircgroup_v2_allow_all_devices(root.as_ptr(), 7) }),
        ),
        (
            "create_prog",
            Box::new(|| unsafe { vircgroup_v2_devices_create_prog(root.as_ptr()) }),
        ),
        (
            "prepare_prog",
            Box::new(|| unsafe { vircgroup_v2_devices_prepare_prog(root.as_ptr()) }),
        ),
    ];
    for (name, call) in &calls {
        assert_eq!((call(), errno()), (-1, libc::EINVAL), "{name}");
        assert!(
            last_error().contains("root of the cgroup2 hierarchy"),
            "{name}: {}",
            last_error()
        );
    }
    let after = ::vircgroup_v2_devices::cgroup::Cgroup::open(mount.to_str().unwrap())
        .unwrap()
        .attached()
        .unwrap();
    assert_eq!(after, before, "something was attached to the root");
    // Reading it is fine.
    assert!(list(&root).starts_with("a *:* rwm") || !before.ids.is_empty());
}

// --------------------------------------------------------------- two processes

const STRESS_OPS: u32 = 3000;

/// Two processes change one cgroup at the same time: each its own rules
/// (random allows and denies) and shared ones (allows only, which commute).
/// The final policy is the model of all operations in their order, and so
/// are the kernel's answers; the count is exact.
#[test]
fn two_processes_changing_one_cgroup_lose_nothing() {
    let Some(mount) = privileged() else { return };
    let cg = Scratch::new(&mount);
    let p = c(cg.p());
    // SAFETY: valid C string.
    assert_eq!(unsafe { vircgroup_v2_deny_all_devices(p.as_ptr()) }, 0);
    // Both start at once: they wait for this file.
    let go = Nodes::new();
    let go_file = go.dir.join("go");
    let children: Vec<ChildGuard> = (0..2)
        .map(|id| {
            ChildGuard(
                Command::new(std::env::current_exe().unwrap())
                    .args([
                        "scenario_stress_writer",
                        "--exact",
                        "--ignored",
                        "--nocapture",
                    ])
                    .env("VCG2_STRESS_CGROUP", cg.p())
                    .env("VCG2_STRESS_ID", id.to_string())
                    .env("VCG2_STRESS_GO", &go_file)
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(&go_file, "").unwrap();
    let started = Instant::now();
    for mut child in children {
        loop {
            if let Some(status) = child.0.try_wait().unwrap() {
                assert!(status.success(), "a writer failed: {status}");
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "a writer hangs"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let mut want: Vec<String> = (0..2).flat_map(|id| stress_model(id).into_iter()).collect();
    want.extend(shared_model());
    want.sort();
    let mut got: Vec<String> = list(&p).lines().map(String::from).collect();
    got.sort();
    assert_eq!(got, want, "the policy after both writers");
    assert_eq!(state(&p).count as usize, want.len(), "count");
    let sample: Vec<(String, Option<rules::Rule>, bool)> = (0..8u64)
        .map(|minor| {
            let text = format!("c 300:{minor} r");
            let allowed = want
                .iter()
                .any(|l| l == &text || l.starts_with(&format!("c 300:{minor} r")));
            (format!("r:{}", node(&cg, 300, minor)), None, allowed)
        })
        .collect();
    cg.expect(&sample);
}

/// The rules writer `id` leaves on its own major (300 + id), as v1 lines.
fn stress_model(id: u32) -> Vec<String> {
    let mut perms = std::collections::BTreeMap::<u32, i32>::new();
    for (minor, p, allow) in stress_ops(id) {
        let e = perms.entry(minor).or_insert(0);
        if allow {
            *e |= p;
        } else {
            *e &= !p;
        }
    }
    perms
        .into_iter()
        .filter(|&(_, p)| p != 0)
        .map(|(minor, p)| format!("c {}:{minor} {}", 300 + id, rules::perms_text(p)))
        .collect()
}

/// The shared rules on major 400 after both writers' allows.
fn shared_model() -> Vec<String> {
    let mut perms = std::collections::BTreeMap::<u32, i32>::new();
    for id in 0..2 {
        for (minor, p) in shared_ops(id) {
            *perms.entry(minor).or_insert(0) |= p;
        }
    }
    perms
        .into_iter()
        .map(|(minor, p)| format!("c 400:{minor} {}", rules::perms_text(p)))
        .collect()
}

fn rng(seed: u64) -> impl FnMut(u64) -> u64 {
    let mut x = seed | 1;
    move |n| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    }
}

fn stress_ops(id: u32) -> Vec<(u32, i32, bool)> {
    let mut r = rng(0x5eed + id as u64);
    (0..STRESS_OPS)
        .map(|_| (r(40) as u32, 1 + r(7) as i32, r(3) != 0))
        .collect()
}

fn shared_ops(id: u32) -> Vec<(u32, i32)> {
    let mut r = rng(0xa11 + id as u64);
    (0..STRESS_OPS / 4)
        .map(|_| (r(30) as u32, 1 + r(7) as i32))
        .collect()
}

#[test]
#[ignore = "run by two_processes_changing_one_cgroup_lose_nothing"]
fn scenario_stress_writer() {
    let path = std::env::var("VCG2_STRESS_CGROUP").unwrap();
    let id: u32 = std::env::var("VCG2_STRESS_ID").unwrap().parse().unwrap();
    let p = c(&path);
    let go = std::env::var("VCG2_STRESS_GO").unwrap();
    let waiting = Instant::now();
    while !Path::new(&go).exists() {
        assert!(
            waiting.elapsed() < Duration::from_secs(30),
            "no start signal"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let started = Instant::now();
    let mut shared = shared_ops(id).into_iter();
    for (i, (minor, perms, is_allow)) in stress_ops(id).into_iter().enumerate() {
        let ret = if is_allow {
            allow(&p, b'c', 300 + id as i32, minor as i32, perms)
        } else {
            deny(&p, b'c', 300 + id as i32, minor as i32, perms)
        };
        assert_eq!(ret, 0, "op {i}: {}", last_error());
        if i % 4 == 0 {
            if let Some((minor, perms)) = shared.next() {
                assert_eq!(
                    allow(&p, b'c', 400, minor as i32, perms),
                    0,
                    "{}",
                    last_error()
                );
            }
        }
    }
    eprintln!(
        "writer {id}: {} operations in {:?}",
        STRESS_OPS + STRESS_OPS / 4,
        started.elapsed()
    );
}

/// A writer that died holding the table's lock (killed in the middle of a
/// change) is taken over: the next call works at once, with the count
/// recounted. With format 5 the lock is the cgroup's flock, which the
/// kernel releases when its holder dies.
#[test]
fn a_writer_that_died_holding_the_lock_is_taken_over() {
    use ::vircgroup_v2_devices::table::layout::{COUNT_OFF, LOCK_OFF, SEQ_OFF};
    let Some(mount) = privileged() else { return };
    let cg = Scratch::new(&mount);
    let p = c(cg.p());
    assert_eq!(allow(&p, b'c', 1, 3, RW), 0, "{}", last_error());
    assert_eq!(allow(&p, b'c', 1, 5, READ), 0, "{}", last_error());
    let format = ::vircgroup_v2_devices::testing::kernel_view(cg.p())
        .unwrap()
        .unwrap()
        .format;
    // A process that is gone: its token (pid and a start time).
    let mut child = Command::new("true").spawn().unwrap();
    let dead = (child.id() as u64) << 32 | 1;
    child.wait().unwrap();
    if format == 6 {
        let s = state(&p);
        // SAFETY: the library's fd, borrowed for the call.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(s.mapfd) };
        let size = sys::map_info(fd).unwrap().value_size as usize;
        let mem = sys::MapMemory::map(fd, size).unwrap();
        // What a writer killed half-way leaves: the lock, an odd sequence,
        // a count it did not finish.
        mem.word(LOCK_OFF).store(dead, Ordering::SeqCst);
        mem.word(SEQ_OFF).fetch_or(1, Ordering::SeqCst);
        mem.word(COUNT_OFF).store(7, Ordering::SeqCst);
        let started = Instant::now();
        assert_eq!(list(&p), "c 1:3 rw\nc 1:5 r\n", "a reader reads through");
        assert_eq!(allow(&p, b'c', 1, 7, READ), 0, "{}", last_error());
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "it waited for a dead process"
        );
        assert_eq!(mem.word(LOCK_OFF).load(Ordering::SeqCst), 0, "released");
        assert_eq!(
            mem.word(SEQ_OFF).load(Ordering::SeqCst) % 2,
            0,
            "even again"
        );
        assert_eq!(state(&p).count, 3, "recounted");
    } else {
        // A child takes the cgroup's flock and is killed holding it.
        let mut holder = ChildGuard(
            Command::new("flock")
                .args(["-o", cg.p(), "sleep", "60"])
                .spawn()
                .unwrap(),
        );
        std::thread::sleep(Duration::from_millis(200));
        holder.0.kill().unwrap();
        holder.0.wait().unwrap();
        assert_eq!(allow(&p, b'c', 1, 7, READ), 0, "{}", last_error());
    }
    assert_eq!(list(&p), "c 1:3 rw\nc 1:5 r\nc 1:7 r\n");
}

/// Two threads replacing the programs of two cgroups over and over with
/// attach_prog: the fds the library closes for one are reused by the
/// kernel for the other thread's new maps, and the library must never take
/// one of those for an fd it still holds.
#[test]
fn fds_the_library_closed_are_never_taken_for_its_own() {
    let Some(mount) = privileged() else { return };
    let cgs = [Scratch::new(&mount), Scratch::new(&mount)];
    std::thread::scope(|s| {
        for cg in &cgs {
            s.spawn(move || {
                let p = c(cg.p());
                for round in 0..300 {
                    let map = sys::map_create(sys::BPF_MAP_TYPE_HASH, 8, 4, 16, "t").unwrap();
                    let fd = std::os::fd::IntoRawFd::into_raw_fd(map);
                    // SAFETY: valid C string; the fd is handed over.
                    let ret = unsafe { vircgroup_v2_devices_attach_prog(p.as_ptr(), fd, 16) };
                    assert_eq!(ret, 0, "round {round}: {}", last_error());
                }
            });
        }
    });
    for cg in &cgs {
        assert_eq!(cg.attached().len(), 1);
    }
}
