// SPDX-License-Identifier: LGPL-2.1-or-later
//! Attacks on the writers' lock and the shared table, made the way a
//! hostile or unlucky deployment makes them, against the real kernel (as
//! root; under CI=true a test that cannot run fails):
//!
//! - an unprivileged process holds every lock it can take on the cgroup,
//!   and a new process's hot-unplug, growth and detach still complete;
//! - writers are SIGKILLed in the middle of changes, and `check` and
//!   `list` then agree with the kernel on every major;
//! - two writers in different PID namespaces change one cgroup at once;
//! - a forked child drops its privileges and writes to every shared
//!   mapping it inherited.
//!
//! The attackers are this test binary run again (an ignored test chosen
//! by name), so that no multi-threaded process forks without exec.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use vircgroup_v2_devices::api;
use vircgroup_v2_devices::rules::{MKNOD, RW};

/// This test binary, running the ignored test `name` with `env`.
fn attacker(name: &str, env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([
        "--exact",
        name,
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name}: run by its test"))
}

/// The unprivileged attacker: as nobody, opens the cgroup directory and
/// every file in it that it can, takes every lock it can on each (flock
/// exclusive, or shared where exclusive is refused, and an OFD read lock),
/// prints `holding N` and keeps them until its stdin closes.
#[test]
#[ignore = "run by an_unprivileged_process_cannot_stall_a_change"]
fn lock_holder() {
    let dir = std::path::PathBuf::from(env("VCG2_ATTACK_CGROUP"));
    become_nobody();
    let mut held = Vec::new();
    let mut paths = vec![dir.clone()];
    paths.extend(std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()));
    for p in paths {
        for write in [false, true] {
            let Ok(f) = std::fs::OpenOptions::new()
                .read(!write)
                .write(write)
                .open(&p)
            else {
                continue;
            };
            let fd = f.as_raw_fd();
            // SAFETY: locks on an open fd; `lk` lives for the call.
            let locked = unsafe {
                libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) == 0
                    || libc::flock(fd, libc::LOCK_SH | libc::LOCK_NB) == 0
                    || {
                        let mut lk: libc::flock = std::mem::zeroed();
                        lk.l_type = if write { libc::F_WRLCK } else { libc::F_RDLCK } as i16;
                        libc::fcntl(fd, libc::F_OFD_SETLK, &lk) == 0
                    }
            };
            if locked {
                held.push(f);
            }
        }
    }
    println!("holding {}", held.len());
    let _ = std::io::stdin().read(&mut [0u8; 1]);
}

/// With an unprivileged process holding every lock it can take, a new
/// process's hot-unplug, a change that grows the map past 64 rules and a
/// detach each complete in under a second.
#[test]
fn an_unprivileged_process_cannot_stall_a_change() {
    let Some(mount) = privileged() else { return };
    let cg = Scratch::new(&mount);
    api::deny_all(cg.p()).unwrap();
    api::allow(cg.p(), &rule(b'c', 1, 3, RW)).unwrap();
    api::remove_prog(cg.p()).unwrap();
    let mut child = attacker("lock_holder", &[("VCG2_ATTACK_CGROUP", cg.p())])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    // libtest may print the test's name first on the same line.
    while !line.contains("holding ") {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the lock holder died"
        );
    }
    let n: usize = line
        .split("holding ")
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // At least the directory: what the lock used to be.
    assert!(n >= 1, "the unprivileged process holds nothing");
    let timed = |args: &[&str]| {
        let t = Instant::now();
        tool(args);
        let took = t.elapsed();
        assert!(took < Duration::from_secs(1), "{args:?} took {took:?}");
        took
    };
    let unplug = timed(&["deny", cg.p(), "c 1:3 rw"]);
    assert!(!api::check(cg.p(), &rule(b'c', 1, 3, RW)).unwrap());
    let rules: Vec<String> = (0..70).map(|i| format!("c 200:{i} rw")).collect();
    let mut grow = vec!["allow", cg.p()];
    grow.extend(rules.iter().map(String::as_str));
    let grown = timed(&grow);
    let listed = cg
        .list()
        .lines()
        .filter(|l| l.starts_with("c 200:"))
        .count();
    assert_eq!(listed, 70, "the 70 rules of one call");
    let detached = timed(&["detach", cg.p()]);
    assert!(cg.attached().is_empty());
    drop(child.stdin.take());
    child.wait().unwrap();
    eprintln!(
        "holding {n} locks: unplug {unplug:?}, growth to 70 rules {grown:?}, detach {detached:?}"
    );
}

/// The writer that is killed: toggles `allow_all(m)` and `deny c *:* m`
/// on the cgroup until it is.
#[test]
#[ignore = "run by killed_writers_leave_check_and_list_agreeing_with_the_kernel"]
fn toggling_writer() {
    let cg = env("VCG2_ATTACK_CGROUP");
    println!("started");
    loop {
        api::allow(&cg, &rule(b'a', -1, -1, MKNOD)).unwrap();
        api::deny(&cg, &rule(b'c', -1, -1, MKNOD)).unwrap();
    }
}

/// For each major M, whether the listed rules grant `c M:1 m`.
fn list_grants(list: &str) -> Vec<bool> {
    let mut granted = vec![false; 4096];
    for l in list.lines() {
        let f: Vec<&str> = l.split([' ', ':']).collect();
        let [ty, ma, mi, perms] = f[..] else {
            panic!("list line {l:?}")
        };
        if (ty == "c" || ty == "a") && (mi == "*" || mi == "1") && perms.contains('m') {
            match ma {
                "*" => granted.iter_mut().for_each(|g| *g = true),
                m => granted[m.parse::<usize>().unwrap()] = true,
            }
        }
    }
    granted
}

/// SIGKILL in the middle of changes, then `check` and `list` against the
/// kernel (`mknod c M:1` in the cgroup) for all 4,096 majors: no
/// disagreement. VCG2_KILLS rounds (default 100).
#[test]
fn killed_writers_leave_check_and_list_agreeing_with_the_kernel() {
    let Some(mount) = privileged() else { return };
    let rounds: u32 = std::env::var("VCG2_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let cg = Scratch::new(&mount);
    api::deny_all(cg.p()).unwrap();
    let nodes = Nodes::new();
    let accesses: Vec<String> = (0..4096)
        .map(|m| format!("mknod:c:{m}:1:{}", nodes.fresh(&format!("n{m}"))))
        .collect();
    let mut seed = std::process::id() as u64 | 1;
    let (mut torn, mut disagreements) = (0, Vec::new());
    for round in 0..rounds {
        api::remove_prog(cg.p()).unwrap();
        let mut child = attacker("toggling_writer", &[("VCG2_ATTACK_CGROUP", cg.p())])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while !line.contains("started") {
            line.clear();
            assert!(out.read_line(&mut line).unwrap() > 0, "the writer died");
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_micros(2_000 + seed % 20_000));
        child.kill().unwrap();
        child.wait().unwrap();
        let kernel: Vec<bool> = cg.probe(&accesses).iter().map(|r| r != "EPERM").collect();
        for f in &accesses {
            let _ = std::fs::remove_file(f.rsplit(':').next().unwrap());
        }
        let listed = list_grants(&cg.list());
        let mixed = kernel.iter().any(|&k| k != kernel[0]);
        torn += mixed as u32;
        for (m, &k) in kernel.iter().enumerate() {
            let check = api::check(cg.p(), &rule(b'c', m as i32, 1, MKNOD)).unwrap();
            if check != k || listed[m] != k {
                disagreements.push(format!(
                    "round {round}, c {m}:1 m: kernel {k}, check {check}, list {}",
                    listed[m]
                ));
            }
        }
    }
    eprintln!("{rounds} writers killed, {torn} left a half-made change");
    assert!(
        disagreements.is_empty(),
        "{} disagreements, first: {:?}",
        disagreements.len(),
        &disagreements[..disagreements.len().min(5)]
    );
    // The next write repairs the table: every major the same again.
    api::allow(cg.p(), &rule(b'c', 1, 3, RW)).unwrap();
    let kernel: Vec<String> = cg.probe(&accesses);
    assert!(kernel.iter().all(|r| r == &kernel[0]), "not repaired");
}

/// One writer: VCG2_ATTACK_N allows of `c MAJOR:i rw` (MAJOR from
/// VCG2_ATTACK_MAJOR); prints `failed N` and the first errors.
#[test]
#[ignore = "run by writers_in_two_pid_namespaces_never_fail"]
fn allowing_writer() {
    let cg = env("VCG2_ATTACK_CGROUP");
    let n: i32 = env("VCG2_ATTACK_N").parse().unwrap();
    let major: i32 = env("VCG2_ATTACK_MAJOR").parse().unwrap();
    let mut failed = 0;
    for i in 0..n {
        if let Err(e) = api::allow(&cg, &rule(b'c', major, i, RW)) {
            if failed < 5 {
                println!("error: {e}");
            }
            failed += 1;
        }
    }
    println!("failed {failed}");
}

/// Two writers, one in a new PID namespace (`unshare --pid --fork
/// --mount-proc`), one not, allow 5,000 rules each on one cgroup at the
/// same time: no call fails, and every rule is there.
#[test]
fn writers_in_two_pid_namespaces_never_fail() {
    let Some(mount) = privileged() else { return };
    let cg = Scratch::new(&mount);
    api::deny_all(cg.p()).unwrap();
    api::remove_prog(cg.p()).unwrap();
    let n = "5000";
    let exe = std::env::current_exe().unwrap();
    let mut inner = Command::new("unshare");
    inner
        .args(["--pid", "--fork", "--mount-proc"])
        .arg(&exe)
        .args(["--exact", "allowing_writer", "--ignored", "--nocapture"])
        .args(["--test-threads=1"])
        .env("VCG2_ATTACK_CGROUP", cg.p())
        .env("VCG2_ATTACK_N", n)
        .env("VCG2_ATTACK_MAJOR", "201");
    let outer = attacker(
        "allowing_writer",
        &[
            ("VCG2_ATTACK_CGROUP", cg.p()),
            ("VCG2_ATTACK_N", n),
            ("VCG2_ATTACK_MAJOR", "202"),
        ],
    )
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    let inner = inner.stdout(Stdio::piped()).spawn().unwrap();
    for (name, child) in [("in a PID namespace", inner), ("on the host", outer)] {
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "writer {name}: {text}");
        assert!(text.contains("failed 0"), "writer {name}: {text}");
    }
    let list = cg.list();
    for major in [201, 202] {
        let count = list
            .lines()
            .filter(|l| l.starts_with(&format!("c {major}:")))
            .count();
        assert_eq!(count, 5000, "rules of major {major}");
    }
}

/// Sets up the library's table for the cgroup, forks, and in the child
/// drops to nobody and writes zeros to every writable shared mapping it
/// inherited (the only memory a child shares with its parent), printing
/// how many bytes it wrote; the parent prints `parent done`.
#[test]
#[ignore = "run by a_forked_child_that_drops_privileges_cannot_change_the_rules"]
fn forking_writer() {
    let cg = env("VCG2_ATTACK_CGROUP");
    api::deny_all(&cg).unwrap();
    api::allow(&cg, &rule(b'c', 1, 3, RW)).unwrap();
    let maps_before = std::fs::read_to_string("/proc/self/maps").unwrap();
    let shared_bpf = maps_before.contains("bpf-map");
    println!("parent maps a bpf map: {shared_bpf}");
    // SAFETY: the child only makes raw system calls and writes memory
    // with no lock and no allocation, then _exit()s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // SAFETY: async-signal-safe calls only; the buffer is static-free
        // stack memory; pointers come from the kernel's own list.
        unsafe { child_scribbles() }
    }
    let mut status = 0;
    // SAFETY: waits for the child just forked.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    println!("child status {status}");
    println!("parent done");
}

/// The forked child: nobody from now on; zeros every `rw-s` mapping of
/// /proc/self/maps and reports the bytes on stdout.
unsafe fn child_scribbles() -> ! {
    let mut buf = [0u8; 65536];
    // SAFETY (all calls): raw syscalls on memory of this frame, and writes
    // to ranges the kernel lists as writable mappings of this process.
    unsafe {
        libc::setgroups(0, std::ptr::null());
        libc::setgid(65534);
        libc::setuid(65534);
        let fd = libc::open(c"/proc/self/maps".as_ptr(), libc::O_RDONLY);
        let mut len = 0usize;
        loop {
            let n = libc::read(fd, buf.as_mut_ptr().add(len).cast(), buf.len() - len);
            if n <= 0 {
                break;
            }
            len += n as usize;
        }
        let mut written = 0usize;
        for line in buf[..len].split(|&b| b == b'\n') {
            // "start-end perms ..."
            let mut parts = line.split(|&b| b == b' ');
            let (Some(range), Some(perms)) = (parts.next(), parts.next()) else {
                continue;
            };
            if perms.len() < 4 || perms[1] != b'w' || perms[3] != b's' {
                continue;
            }
            let mut it = range.split(|&b| b == b'-');
            let hex = |s: &[u8]| {
                s.iter().fold(0usize, |a, &c| {
                    a * 16 + (c as char).to_digit(16).unwrap_or(0) as usize
                })
            };
            let (Some(a), Some(b)) = (it.next(), it.next()) else {
                continue;
            };
            let (start, end) = (hex(a), hex(b));
            std::ptr::write_bytes(start as *mut u8, 0, end - start);
            written += end - start;
        }
        let mut msg = *b"child wrote 0000000000 bytes\n";
        let mut w = written;
        for i in (12..22).rev() {
            msg[i] = b'0' + (w % 10) as u8;
            w /= 10;
        }
        libc::write(1, msg.as_ptr().cast(), msg.len());
        libc::_exit(0)
    }
}

/// After a forked child dropped its privileges and zeroed every writable
/// shared mapping it inherited, the rules, the kernel's answers and the
/// parent's next change are as before.
#[test]
fn a_forked_child_that_drops_privileges_cannot_change_the_rules() {
    let Some(mount) = privileged() else { return };
    let cg = Scratch::new(&mount);
    let out = attacker("forking_writer", &[("VCG2_ATTACK_CGROUP", cg.p())])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("parent done"),
        "{text}"
    );
    assert!(
        text.contains("child wrote"),
        "the child did not run: {text}"
    );
    let nodes = Nodes::new();
    let null = nodes.node("null", 'c', 1, 3);
    let zero = nodes.node("zero", 'c', 1, 5);
    assert_eq!(cg.list(), "c 1:3 rw\n", "{text}");
    cg.expect(&[
        (format!("r:{null}"), Some(rule(b'c', 1, 3, RW)), true),
        (format!("r:{zero}"), Some(rule(b'c', 1, 5, RW)), false),
    ]);
    api::allow(cg.p(), &rule(b'c', 1, 5, RW)).unwrap();
    assert_eq!(cg.list(), "c 1:3 rw\nc 1:5 rw\n");
    eprintln!("{}", text.trim());
}
