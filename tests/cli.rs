// SPDX-License-Identifier: LGPL-2.1-or-later
//! The admin tool, run for real: every subcommand against scratch cgroups,
//! its exit statuses and error lines, and the kernel's answer behind them.
//! Runs as root; under CI=true a test that cannot run fails.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use vircgroup_v2_devices::rules::{READ, RW};

const TOOL: &str = env!("CARGO_BIN_EXE_vircgroup-devices");
const PROBE: &str = env!("CARGO_BIN_EXE_vcg2-probe");

/// How the tool ended.
#[derive(Debug)]
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn tool(args: &[&str]) -> Out {
    tool_os(args)
}

/// `tool` with arguments that need not be UTF-8.
fn tool_os<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Out {
    let out = Command::new(TOOL)
        .args(args)
        .output()
        .expect("run the tool");
    Out {
        code: out.status.code().expect("exited"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

impl Out {
    /// Asserts the exit status, and for a failure one error line that
    /// contains every `needle`.
    fn fails(&self, code: i32, needles: &[&str]) -> &Self {
        assert_eq!(self.code, code, "{self:?}");
        assert_eq!(self.stderr.lines().count(), 1, "one error line: {self:?}");
        assert!(self.stderr.starts_with("vircgroup-devices: "), "{self:?}");
        for needle in needles {
            assert!(self.stderr.contains(needle), "{needle:?} not in {self:?}");
        }
        self
    }

    fn ok(&self) -> &Self {
        assert_eq!(self.code, 0, "{self:?}");
        self
    }
}

/// The path relative to the cgroup2 mount, as an admin types it.
fn relative(cg: &Scratch) -> String {
    cg.path.file_name().unwrap().to_str().unwrap().to_string()
}

/// A cgroup the tool made (named by the child's /proc/self/cgroup line
/// `0::/NAME`): removed on drop if the tool left it behind.
struct Made(PathBuf);

impl Made {
    fn from_proc_line(mount: &Path, line: &str) -> Made {
        let rel = line.strip_prefix("0::/").expect("a cgroup v2 line");
        assert!(rel.starts_with("vircgroup-devices-"), "{line}");
        Made(mount.join(rel))
    }
}

impl Drop for Made {
    fn drop(&mut self) {
        if self.0.exists() {
            let _ = std::fs::write(self.0.join("cgroup.kill"), "1");
            std::thread::sleep(Duration::from_millis(100));
            let _ = std::fs::remove_dir(&self.0);
        }
    }
}

/// Scratch cgroups the tool made for process `pid` and left behind.
fn left_by(mount: &Path, pid: u32) -> Vec<String> {
    std::fs::read_dir(mount)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.starts_with("vircgroup-devices-") && n.split('-').nth(3) == Some(&pid.to_string())
        })
        .collect()
}

#[test]
fn help_and_usage_errors() {
    let out = tool(&["--help"]);
    out.ok();
    for cmd in ["list", "allow", "deny", "check", "detach", "run", "demo"] {
        assert!(out.stdout.contains(&format!("\n  {cmd} ")), "{cmd}");
        let help = tool(&[cmd, "--help"]);
        help.ok();
        assert!(
            help.stdout
                .starts_with(&format!("Usage: vircgroup-devices {cmd}")),
            "{help:?}"
        );
        assert_eq!(tool(&["help", cmd]).stdout, help.stdout);
    }
    assert!(tool(&["--version"])
        .ok()
        .stdout
        .starts_with("vircgroup-devices 0."));
    assert_eq!(tool(&[]).code, 2);
    tool(&["frob"]).fails(2, &["unknown command 'frob'"]);
    tool(&["help", "frob"]).fails(2, &["no command 'frob'"]);
    tool(&["list"]).fails(2, &["list: expected CGROUP", "list --help"]);
    tool(&["list", "a", "b"]).fails(2, &["expected CGROUP"]);
    tool(&["list", "--all", "x"]).fails(2, &["unknown option '--all'"]);
    tool(&["detach"]).fails(2, &["expected CGROUP"]);
    tool(&["check", "x"]).fails(2, &["expected CGROUP and one RULE"]);
    tool(&["check", "x", "c 1:3 r", "c 1:5 r"]).fails(2, &["one RULE"]);
    tool(&["allow", "x"]).fails(2, &["at least one RULE"]);
    tool(&["deny", "x"]).fails(2, &["at least one RULE"]);
    tool(&["demo", "now"]).fails(2, &["demo: takes no argument"]);
    tool(&["run"]).fails(2, &["run: expected a COMMAND"]);
    tool(&["run", "--"]).fails(2, &["run: expected a COMMAND"]);
    tool(&["run", "--allow"]).fails(2, &["--allow needs a RULE"]);
    tool(&["run", "--deny", "a", "--", "true"]).fails(2, &["unknown option '--deny'"]);
    tool(&["list", ""]).fails(2, &["CGROUP is empty"]);
}

#[test]
fn bad_rules_are_usage_errors_and_change_nothing() {
    let Some(mount) = privileged() else { return };
    let cg = Scratch::new(&mount);
    let bad = [
        ("c 1:3 rwx", "permission 'x'"),
        ("q 1:3 r", "device type 'q'"),
        ("c 5000:1 r", "major number '5000'"),
        ("c 1:1048576 r", "minor number '1048576'"),
        ("c 1:3", "expected 'TYPE MAJOR:MINOR PERMS'"),
        ("b 8:* ", "expected 'TYPE MAJOR:MINOR PERMS'"),
        ("/dev/null rx", "permission 'x'"),
        ("/dev/null", "expected a device node and permissions"),
    ];
    for (rule, why) in bad {
        let quoted = format!("invalid rule '{}'", rule.trim());
        for cmd in ["allow", "deny", "check"] {
            tool(&[cmd, cg.p(), rule]).fails(2, &[&quoted, why]);
        }
        tool(&["run", "--allow", rule, "--", "true"]).fails(2, &[&quoted, why]);
    }
    assert!(cg.attached().is_empty(), "nothing was attached");
    // Every rule is checked before the first one is applied.
    tool(&["deny", cg.p(), "a"]).ok();
    tool(&["allow", cg.p(), "c 1:3 rw", "c 1:5 rwx"]).fails(2, &["'c 1:5 rwx'"]);
    assert_eq!(tool(&["list", cg.p()]).ok().stdout, "");
    // A device path is looked at: what is wrong there is a failure, not usage.
    let nodes = Nodes::new();
    let missing = nodes.fresh("missing");
    tool(&["allow", cg.p(), &format!("{missing} r")]).fails(1, &[&missing]);
    let dir = nodes.dir.to_str().unwrap();
    tool(&["allow", cg.p(), &format!("{dir} r")]).fails(1, &["is not a device node"]);
    assert_eq!(tool(&["list", cg.p()]).stdout, "");
}

/// `run` says, in its help and in the manual (help2man reads --help),
/// that COMMAND is root and can leave the cgroup.
#[test]
fn run_says_it_is_not_a_sandbox() {
    for args in [&["--help"][..], &["run", "--help"]] {
        let out = tool(args);
        let text = out
            .ok()
            .stdout
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        for needle in ["not a sandbox", "as root", "every capability", "out of"] {
            assert!(text.contains(needle), "{needle:?} not in {args:?}: {text}");
        }
    }
}

/// `check` exits 1 for denied and for nothing else: every error is 2
/// (usage) or 3, so a script never takes a failure for a denial.
#[test]
fn check_exits_1_only_when_denied() {
    let help = tool(&["check", "--help"]);
    assert!(help.ok().stdout.contains("never exits 1"), "{help:?}");
    let usage = tool(&["--help"]);
    assert!(usage.stdout.contains("never 1 on an error"), "{usage:?}");
    let Some(mount) = privileged() else { return };
    let cg = Scratch::new(&mount);
    tool(&["deny", cg.p(), "a"]).ok();
    tool(&["allow", cg.p(), "c 1:3 r"]).ok();
    assert_eq!(tool(&["check", cg.p(), "c 1:3 r"]).ok().stdout, "allowed\n");
    let denied = tool(&["check", cg.p(), "c 1:3 w"]);
    assert_eq!((denied.code, denied.stdout.as_str()), (1, "denied\n"));
    // Usage errors: 2.
    tool(&["check", cg.p(), "c 1:3 x"]).fails(2, &["permission 'x'"]);
    tool(&["check", cg.p()]).fails(2, &["one RULE"]);
    // Every other error: 3.
    let missing = format!("{}-missing", cg.p());
    tool(&["check", &missing, "c 1:3 r"]).fails(3, &[&missing, "No such file"]);
    let nodes = Nodes::new();
    let node = nodes.fresh("missing");
    tool(&["check", cg.p(), &format!("{node} r")]).fails(3, &[&node]);
    let nodes_dir = nodes.dir.to_str().unwrap();
    tool(&["check", nodes_dir, "c 1:3 r"]).fails(3, &["not on a cgroup v2 filesystem"]);
}

#[test]
fn a_cgroup_that_does_not_exist() {
    let Some(mount) = privileged() else { return };
    let name = format!("vcg2-test-missing-{}", std::process::id());
    let abs = mount.join(&name);
    let abs = abs.to_str().unwrap();
    for cg in [name.as_str(), abs] {
        tool(&["list", cg]).fails(1, &[abs, "No such file"]);
        tool(&["allow", cg, "c 1:3 rw"]).fails(1, &[abs, "No such file"]);
        tool(&["deny", cg, "a"]).fails(1, &[abs, "No such file"]);
        tool(&["check", cg, "c 1:3 r"]).fails(3, &[abs, "No such file"]);
        tool(&["detach", cg]).fails(1, &[abs, "No such file"]);
    }
    assert!(!Path::new(abs).exists());
    // Not a cgroup at all.
    let nodes = Nodes::new();
    tool(&["list", nodes.dir.to_str().unwrap()]).fails(1, &["not on a cgroup v2 filesystem"]);
}

#[test]
fn allow_deny_list_check_with_the_kernel_behind() {
    let Some(mount) = privileged() else { return };
    let cg = Scratch::new(&mount);
    let rel = relative(&cg);
    let nodes = Nodes::new();
    let null = nodes.node("null", 'c', 1, 3);
    let c240_1 = nodes.node("c240_1", 'c', 240, 1);
    let b240_1 = nodes.node("b240_1", 'b', 240, 1);

    // No program: everything is allowed, and one rule cannot change that.
    let out = tool(&["list", &rel]);
    assert_eq!((out.code, out.stdout.as_str()), (0, "a *:* rwm\n"));
    assert!(out.stderr.contains("no device program"), "{out:?}");
    assert_eq!(
        tool(&["check", &rel, "c 240:1 rwm"]).ok().stdout,
        "allowed\n"
    );
    tool(&["allow", &rel, "c 1:3 rw"]).fails(1, &["no device program", "deny"]);
    tool(&["deny", &rel, "c 1:3 rw"]).fails(1, &["no device program", "deny"]);
    assert!(cg.attached().is_empty());

    // Deny all, then allow numbers, a wildcard and a node by path.
    tool(&["deny", &rel, "a"]).ok();
    let out = tool(&["list", &rel]);
    assert_eq!((out.code, out.stdout.as_str()), (0, ""));
    assert!(out.stderr.contains("every device is denied"), "{out:?}");
    assert!(!cg.allowed(&format!("r:{null}")));
    tool(&[
        "allow",
        &rel,
        "c 1:3 rw",
        "b 240:* r",
        &format!("{c240_1} r"),
    ])
    .ok();
    assert_eq!(
        tool(&["list", cg.p()]).ok().stdout,
        "b 240:* r\nc 1:3 rw\nc 240:1 r\n"
    );
    assert_eq!(
        cg.probe(&[
            format!("rw:{null}"),
            format!("r:{c240_1}"),
            format!("w:{c240_1}"),
            format!("r:{b240_1}"),
        ]),
        ["ok", "ENXIO", "EPERM", "ENXIO"]
    );
    let check = |rule: &str| tool(&["check", &rel, rule]);
    for (rule, allowed) in [
        ("c 1:3 rw", true),
        ("c 1:3 rwm", false),
        ("c 240:1 r", true),
        ("c 240:1 w", false),
        ("b 240:7 r", true),
        ("b 240:* r", true),
        ("a *:* r", false),
        ("a", false),
        (&format!("{null} rw"), true),
        (&format!("{b240_1} w"), false),
    ] {
        let out = check(rule);
        let (code, word) = if allowed {
            (0, "allowed\n")
        } else {
            (1, "denied\n")
        };
        assert_eq!((out.code, out.stdout.as_str()), (code, word), "{rule}");
    }

    // deny takes bits away from that exact rule.
    tool(&["deny", &rel, "c 1:3 w", "b 240:* r"]).ok();
    assert_eq!(tool(&["list", &rel]).stdout, "c 1:3 r\nc 240:1 r\n");
    assert_eq!(
        cg.probe(&[
            format!("r:{null}"),
            format!("w:{null}"),
            format!("r:{b240_1}")
        ]),
        ["ok", "EPERM", "EPERM"]
    );
    assert_eq!(check("c 1:3 w").code, 1);
    // 'allow a' lets everything through again; 'deny a' removes every rule.
    tool(&["allow", &rel, "a"]).ok();
    assert!(cg.allowed(&format!("w:{b240_1}")));
    tool(&["deny", &rel, "a"]).ok();
    assert_eq!(tool(&["list", &rel]).stdout, "");
    assert!(!cg.allowed(&format!("r:{null}")));
}

#[test]
fn libvirt_programs_are_read_without_being_replaced() {
    let Some(mount) = privileged() else { return };
    let cg = Scratch::new(&mount);
    let libvirt_id = attach_like_libvirt(
        &cg.path,
        65,
        &[
            (b'c', 1, 3, RW),
            (b'c', 136, -1, RW),
            (b'b', 8, 0, READ),
            (b'a', 240, 1, READ),
        ],
    );
    let out = tool(&["list", &relative(&cg)]);
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (
            0,
            "b 8:0 r\nb 240:1 r\nc 1:3 rw\nc 136:* rw\nc 240:1 r\n",
            ""
        )
    );
    assert_eq!(tool(&["check", cg.p(), "c 136:4 rw"]).code, 0);
    assert_eq!(tool(&["check", cg.p(), "b 8:0 w"]).code, 1);
    assert_eq!(
        cg.attached(),
        [libvirt_id],
        "libvirt's program is still there"
    );
    let out = tool(&["detach", cg.p()]);
    out.ok();
    assert!(out.stdout.contains("libvirt's device program"), "{out:?}");
    assert!(cg.attached().is_empty());
}

/// A program that allows everything: someone else's.
fn attach_foreign(cg: &Scratch) -> u32 {
    let prog = foreign_program(None);
    attach_raw(&cg.path, &prog, 0);
    prog_id(&prog)
}

#[test]
fn a_program_it_does_not_recognise_is_named_and_left_alone() {
    let Some(mount) = privileged() else { return };
    let cg = Scratch::new(&mount);
    let id = attach_foreign(&cg);
    let named = format!("device program {id} 'foreign'");
    tool(&["list", cg.p()]).fails(1, &[&named, "not this library's", "cannot be read"]);
    // check and explain run it (it allows everything); a query of many
    // devices cannot be answered by running it.
    let out = tool(&["check", cg.p(), "c 1:3 r"]);
    assert_eq!((out.code, out.stdout.as_str()), (0, "allowed\n"), "{out:?}");
    let out = tool(&["explain", cg.p(), "c 1:3 r"]);
    out.ok();
    assert!(
        out.stdout.ends_with(&format!(
            "prog={id} owner=other:foreign verdict=allow\nresult=allowed\n"
        )),
        "{out:?}"
    );
    tool(&["check", cg.p(), "c 1:* r"]).fails(3, &[&named, "names many"]);
    tool(&["allow", cg.p(), "c 1:3 r"]).fails(1, &[&named]);
    tool(&["deny", cg.p(), "c 1:3 r"]).fails(1, &[&named]);
    tool(&["deny", cg.p(), "a"]).fails(1, &[&id.to_string(), "not replacing it"]);
    tool(&["detach", cg.p()]).fails(1, &[&named, "not detaching it"]);
    assert_eq!(cg.attached(), [id]);
}

#[test]
fn detach_leaves_every_device_allowed() {
    let Some(mount) = privileged() else { return };
    let cg = Scratch::new(&mount);
    let nodes = Nodes::new();
    let c240_1 = nodes.node("c240_1", 'c', 240, 1);
    tool(&["deny", &relative(&cg), "a"]).ok();
    assert!(!cg.allowed(&format!("r:{c240_1}")));
    let ids = cg.attached();
    let out = tool(&["detach", &relative(&cg)]);
    out.ok();
    assert!(
        out.stdout
            .contains(&format!("this library's device program {}", ids[0])),
        "{out:?}"
    );
    assert!(cg.attached().is_empty());
    assert!(cg.allowed(&format!("r:{c240_1}")));
    let out = tool(&["detach", cg.p()]);
    out.ok();
    assert!(out.stdout.contains("no device program"), "{out:?}");
}

/// Arguments for `run` that probe `accesses` from inside its cgroup: a
/// shell finds the cgroup, then vcg2-probe (re)joins it and probes.
fn run_probe(mount: &Path, opts: &[&str], accesses: &[String]) -> Vec<String> {
    let script = r#"p=$0 m=$1; shift; exec "$p" "$m$(sed -n 's/^0:://p' /proc/self/cgroup)" "$@""#;
    let mut args: Vec<String> = ["run"].iter().chain(opts).map(|s| s.to_string()).collect();
    args.extend(["--", "sh", "-c", script, PROBE, mount.to_str().unwrap()].map(String::from));
    args.extend_from_slice(accesses);
    args
}

#[test]
fn run_applies_the_rules_and_the_qemu_defaults() {
    let Some(mount) = privileged() else { return };
    let nodes = Nodes::new();
    let node = |name, ty, ma, mi| nodes.node(name, ty, ma, mi);
    let allowed = [
        node("null", 'c', 1, 3),
        node("zero", 'c', 1, 5),
        node("full", 'c', 1, 7),
        node("random", 'c', 1, 8),
        node("urandom", 'c', 1, 9),
        node("ptmx", 'c', 5, 2),
        node("kvm", 'c', 10, 232),
        node("pts7", 'c', 136, 7),
        node("b240_1", 'b', 240, 1),
    ];
    let denied = [
        node("port", 'c', 1, 4),
        node("tty", 'c', 5, 0),
        node("c240_1", 'c', 240, 1),
        node("b240_2", 'b', 240, 2),
    ];
    let mut accesses: Vec<String> = allowed.iter().map(|p| format!("r:{p}")).collect();
    accesses.extend(denied.iter().map(|p| format!("r:{p}")));
    let args = run_probe(
        &mount,
        &["--qemu-defaults", "--allow", "b 240:1 r"],
        &accesses,
    );
    let out = Command::new(TOOL).args(&args).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let results: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(results.len(), accesses.len(), "{results:?}");
    for (access, result) in accesses.iter().zip(&results) {
        let expect_denied = denied.iter().any(|d| access.ends_with(d.as_str()));
        assert_eq!(result == "EPERM", expect_denied, "{access}: {result}");
    }
    // Without --qemu-defaults, only what --allow names.
    let args = run_probe(
        &mount,
        &["--allow=c 1:5 r"],
        &[format!("r:{}", allowed[1]), format!("r:{}", allowed[0])],
    );
    let out = Command::new(TOOL).args(&args).output().unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "ok\nEPERM\n");
}

#[test]
fn run_returns_the_exit_status_and_removes_its_cgroup() {
    let Some(mount) = privileged() else { return };
    let out = Command::new(TOOL)
        .args(["run", "--", "sh", "-c", "cat /proc/self/cgroup; exit 7"])
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let line = stdout.lines().find(|l| l.starts_with("0::/")).unwrap();
    let made = Made::from_proc_line(&mount, line);
    assert_eq!(out.status.code(), Some(7));
    assert!(!made.0.exists(), "{} was removed", made.0.display());

    // Killed by a signal: 128 + N, as shells report it.
    let child = Command::new(TOOL)
        .args(["run", "--", "sh", "-c", "kill -KILL $$"])
        .spawn()
        .unwrap();
    let pid = child.id();
    assert_eq!(child.wait_with_output().unwrap().status.code(), Some(137));
    assert_eq!(left_by(&mount, pid), Vec::<String>::new());

    // A command that cannot be run: 127, and no cgroup left.
    let child = Command::new(TOOL)
        .args(["run", "--", "/nonexistent/command"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/command"));
    assert_eq!(left_by(&mount, pid), Vec::<String>::new());
}

/// Sends SIGTERM to `run`, then waits (at most 20 s) for it to end.
fn terminate(mut child: std::process::Child) -> std::process::ExitStatus {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("run did not end after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_to_run_reaches_the_child_and_removes_the_cgroup() {
    let Some(mount) = privileged() else { return };
    // sleep itself, not a shell (which would unblock signals for it).
    let child = Command::new(TOOL)
        .args(["run", "--", "sleep", "60"])
        .spawn()
        .unwrap();
    let pid = child.id();
    // Wait until sleep runs in the scratch cgroup.
    let deadline = Instant::now() + Duration::from_secs(20);
    let made = loop {
        let running = left_by(&mount, pid).into_iter().find_map(|name| {
            let procs = std::fs::read_to_string(mount.join(&name).join("cgroup.procs")).ok()?;
            let comm = std::fs::read_to_string(format!("/proc/{}/comm", procs.trim())).ok()?;
            (comm == "sleep\n").then(|| Made(mount.join(&name)))
        });
        if let Some(made) = running {
            break made;
        }
        assert!(
            Instant::now() < deadline,
            "sleep never ran in a scratch cgroup"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let status = terminate(child);
    assert_eq!(status.code(), Some(128 + libc::SIGTERM), "sleep's SIGTERM");
    assert!(!made.0.exists(), "{} was removed", made.0.display());
}

#[test]
fn processes_left_in_the_cgroup_are_killed_with_it() {
    let Some(mount) = privileged() else { return };
    use std::io::{BufRead, BufReader};
    let script = "sleep 60 </dev/null & cat /proc/self/cgroup; exec sleep 60";
    let mut child = Command::new(TOOL)
        .args(["run", "--allow", "c 1:3 rw", "--", "sh", "-c", script])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines
        .find_map(|l| l.ok().filter(|l| l.starts_with("0::/")))
        .expect("the child's cgroup");
    let made = Made::from_proc_line(&mount, &line);
    let procs = std::fs::read_to_string(made.0.join("cgroup.procs")).unwrap();
    assert!(procs.lines().count() >= 2, "both sleeps run in it: {procs}");
    let status = terminate(child);
    assert_eq!(status.code(), Some(128 + libc::SIGTERM));
    assert!(!made.0.exists(), "{} was removed", made.0.display());
}

#[test]
fn demo_shows_a_denial_and_cleans_up() {
    let Some(mount) = privileged() else { return };
    let started = Instant::now();
    let out = tool(&["demo"]);
    assert_eq!((out.code, out.stderr.as_str()), (0, ""), "{out:?}");
    let after = out.stdout.split("device program on every access").nth(1);
    let after = after.expect("the second probe");
    assert!(after.contains("/dev/null: allowed"), "{}", out.stdout);
    assert!(after.contains("/dev/zero: denied"), "{}", out.stdout);
    assert!(out.stdout.contains("\n  c 1:3 rw\n"), "{}", out.stdout);
    let path = out.stdout.lines().next().unwrap();
    let path = path.strip_prefix("A scratch cgroup: ").unwrap();
    assert!(path.starts_with(mount.to_str().unwrap()), "{path}");
    assert!(!Path::new(path).exists());
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn rule_text_is_read_as_cgroup_v1_reads_it() {
    let Some(mount) = privileged() else { return };
    let cg = Scratch::new(&mount);
    // v1 reads every rule starting with 'a' as every device: with numbers,
    // refused, naming what to write instead.
    for cmd in ["allow", "deny", "check"] {
        tool(&[cmd, cg.p(), "a 1:3 r"]).fails(
            2,
            &[
                "invalid rule 'a 1:3 r'",
                "means every device",
                "write 'c 1:3 r' and 'b 1:3 r'",
            ],
        );
        tool(&[cmd, cg.p(), "a 8:* m"]).fails(2, &["'c 8:* m' and 'b 8:* m'"]);
    }
    tool(&["run", "--allow", "a 1:3 r", "--", "true"]).fails(2, &["'c 1:3 r' and 'b 1:3 r'"]);
    // Allowing 'a' allows every permission in v1: fewer is refused.
    let every = [
        "allowing 'a' allows every device with every permission",
        "'b *:* r' and 'c *:* r'",
    ];
    tool(&["allow", cg.p(), "a *:* r"]).fails(2, &every);
    tool(&["run", "--allow=a *:* r", "--", "true"]).fails(2, &every);
    // What the kernel's parser lets through, refused with the reason.
    let lenient = [
        (
            "c 01:3 r",
            "major number '01' has a leading zero (write '1')",
        ),
        (
            "b 8:00 r",
            "minor number '00' has a leading zero (write '0')",
        ),
        ("c 1:3 rrw", "permission 'r' given twice in 'rrw'"),
        ("/dev/null rwr", "permission 'r' given twice"),
    ];
    for (rule, why) in lenient {
        for cmd in ["allow", "deny", "check"] {
            tool(&[cmd, cg.p(), rule]).fails(2, &[why]);
        }
    }
    // Control characters come back escaped, on one line.
    for (rule, shown) in [
        ("c 1:3 r\x1b[2J", "'c 1:3 r\\x1b[2J'"),
        ("c\n1:3 q", "'c\\n1:3 q'"),
        ("\u{202e}c 1:3 r", "'\\u{202e}c 1:3 r'"),
    ] {
        let out = tool(&["allow", cg.p(), rule]);
        out.fails(2, &[shown]);
        assert!(!out.stderr.trim_end().contains(char::is_control), "{out:?}");
    }
    assert!(cg.attached().is_empty(), "nothing was attached");

    // 'a' and 'a *:* rwm' are every device, as b and c rules.
    tool(&["deny", cg.p(), "a"]).ok();
    tool(&["allow", cg.p(), "a *:* rwm"]).ok();
    assert_eq!(tool(&["list", cg.p()]).stdout, "b *:* rwm\nc *:* rwm\n");
    assert_eq!(tool(&["check", cg.p(), "a *:* rwm"]).code, 0);
    // deny 'a *:* PERMS' denies every device, whatever PERMS, as in v1.
    tool(&["allow", cg.p(), "c 1:3 rw", "b 8:* m"]).ok();
    tool(&["deny", cg.p(), "a *:* rwm"]).ok();
    assert_eq!(tool(&["list", cg.p()]).stdout, "");
    tool(&["allow", cg.p(), "c 1:3 rw", "a"]).ok();
    tool(&["deny", cg.p(), "a *:* r"]).ok();
    assert_eq!(tool(&["list", cg.p()]).stdout, "");
    assert_eq!(tool(&["check", cg.p(), "c 1:3 r"]).code, 1);
}

#[test]
fn a_list_pasted_back_gives_the_same_rules() {
    let Some(mount) = privileged() else { return };
    let (from, to) = (Scratch::new(&mount), Scratch::new(&mount));
    tool(&["deny", from.p(), "a"]).ok();
    // Equal char and block rules on the same numbers: two lines, not 'a'.
    tool(&[
        "allow",
        from.p(),
        "c 8:* m",
        "b 8:* m",
        "c 1:3 rw",
        "b *:* r",
    ])
    .ok();
    let list = tool(&["list", from.p()]).ok().stdout.clone();
    assert_eq!(list, "b 8:* m\nb *:* r\nc 1:3 rw\nc 8:* m\n");
    tool(&["deny", to.p(), "a"]).ok();
    let lines: Vec<&str> = list.lines().collect();
    tool(&[&["allow", to.p()], &lines[..]].concat()).ok();
    assert_eq!(tool(&["list", to.p()]).stdout, list);
    assert_eq!(
        tool(&["check", to.p(), "c 7:0 r"]).code,
        1,
        "not every device"
    );
}

#[test]
fn cgroup_paths_copied_from_proc_pid_cgroup() {
    let Some(mount) = privileged() else { return };
    let cg = Scratch::new(&mount);
    tool(&["deny", cg.p(), "a"]).ok();
    tool(&["allow", cg.p(), "c 1:3 rw"]).ok();
    // The line a process in the cgroup shows in /proc/self/cgroup.
    let out = Command::new("sh")
        .args([
            "-c",
            r#"echo 0 > "$1/cgroup.procs" && cat /proc/self/cgroup"#,
            "sh",
            cg.p(),
        ])
        .output()
        .unwrap();
    let proc_cgroup = String::from_utf8(out.stdout).unwrap();
    let line = proc_cgroup.lines().find(|l| l.starts_with("0::/")).unwrap();
    assert_eq!(line, format!("0::/{}", relative(&cg)));
    let shown = format!("using '{}'", cg.p());
    let out = tool(&["list", line]);
    assert_eq!(out.stdout, "c 1:3 rw\n");
    assert!(out.stderr.contains("is a /proc/PID/cgroup line"), "{out:?}");
    assert!(out.stderr.contains(&shown), "{out:?}");
    // Its path alone: '/NAME' does not exist, the one under the mount does.
    let slash = &line["0::".len()..];
    assert!(!Path::new(slash).exists());
    let out = tool(&["check", slash, "c 1:3 r"]);
    assert_eq!((out.code, out.stdout.as_str()), (0, "allowed\n"), "{out:?}");
    assert!(
        out.stderr.contains(&format!("'{slash}' does not exist")),
        "{out:?}"
    );
    assert!(out.stderr.contains(&shown), "{out:?}");
    tool(&["allow", slash, "b 8:0 r"]).ok();
    tool(&["deny", line, "c 1:3 w"]).ok();
    assert_eq!(cg.list(), "b 8:0 r\nc 1:3 r\n");
    // Absolute and relative paths as typed: no note.
    for typed in [cg.p().to_string(), relative(&cg)] {
        let out = tool(&["list", &typed]);
        assert_eq!(
            (out.stdout.as_str(), out.stderr.as_str()),
            ("b 8:0 r\nc 1:3 r\n", "")
        );
    }
    // Neither path exists: both are named.
    let missing = format!("/vcg2-test-missing-{}", std::process::id());
    let under = mount.join(&missing[1..]);
    tool(&["list", &missing]).fails(
        1,
        &[
            &format!("'{missing}'"),
            "No such file",
            &format!("'{}'", under.display()),
        ],
    );
    tool(&["list", &format!("0::{missing}")]).fails(1, &[under.to_str().unwrap()]);
    // Lines that are not cgroup v2 paths.
    tool(&["list", "0::machine"]).fails(2, &["'0::/PATH'"]);
    tool(&["list", "5:devices:/machine"])
        .fails(2, &["cgroup v1 line", "hierarchy 5, devices", "'0::'"]);
    tool(&["list", "1:name=systemd:/"]).fails(2, &["cgroup v1 line"]);
    // A path with control characters is echoed escaped.
    let out = tool(&["list", "/vcg2-test-\x1b[31m"]);
    out.fails(1, &["'/vcg2-test-\\x1b[31m'"]);
    assert!(!out.stderr.trim_end().contains(char::is_control), "{out:?}");
}

/// `allow CG` with 66,000 rules, more than a table holds: it fails, naming
/// why, and applies none of them (before, 65,535 were applied).
#[test]
fn a_change_over_the_limit_applies_no_rule() {
    let Some(mount) = privileged() else { return };
    let cg = Scratch::new(&mount);
    tool(&["deny", cg.p(), "a"]).ok();
    tool(&["allow", cg.p(), "c 1:3 rw", "c 136:* rw"]).ok();
    let before = tool(&["list", cg.p()]).ok().stdout.clone();
    let rules: Vec<String> = (0..66_000)
        .map(|i| format!("c {}:{} r", 1000 + i / 1000, i % 1000))
        .collect();
    let mut args = vec!["allow", cg.p()];
    args.extend(rules.iter().map(String::as_str));
    // The tool reads VCG2_EMULATE_KERNEL as the library's test hook does.
    let emulated = std::env::var("VCG2_EMULATE_KERNEL").ok().and_then(|v| {
        let (major, minor) = v.split_once('.')?;
        Some((major.parse::<u32>().ok()?, minor.parse::<u32>().ok()?))
    });
    if cfg!(feature = "testing") && emulated.is_some_and(|k| k < (5, 5)) {
        // The tool emulates that kernel too: no table before Linux 5.5,
        // and hash maps of that size are fine.
        tool(&args).ok();
        let list = tool(&["list", cg.p()]).ok().stdout.clone();
        assert_eq!(list.lines().count(), 66_002);
        return;
    }
    tool(&args).fails(1, &["too large"]);
    assert_eq!(tool(&["list", cg.p()]).ok().stdout, before);
    // The same in one step that fits: every rule applied.
    let mut args = vec!["allow", cg.p()];
    args.extend(rules[..300].iter().map(String::as_str));
    args.push("c 1:5 r");
    tool(&args).ok();
    let list = tool(&["list", cg.p()]).ok().stdout.clone();
    assert_eq!(list.lines().count(), 303, "{list}");
}

/// A cgroup named with bytes that are not UTF-8 works through the tool,
/// and its messages show those bytes escaped.
#[test]
fn a_cgroup_named_with_bytes_that_are_not_utf8_works() {
    use std::os::unix::ffi::OsStrExt;
    let Some(mount) = privileged() else { return };
    let cg = Scratch::named(&mount, b"vcg2-\xff\xfe-");
    let name = cg.path.file_name().unwrap().to_owned();
    let path = cg.path.as_os_str();
    for cg_arg in [path, name.as_os_str()] {
        let arg = |s: &str| std::ffi::OsString::from(s);
        tool_os(&[arg("deny"), cg_arg.into(), arg("a")]).ok();
        tool_os(&[arg("allow"), cg_arg.into(), arg("c 1:3 rw"), arg("c 1:5 r")]).ok();
        assert_eq!(
            tool_os(&[arg("list"), cg_arg.into()]).ok().stdout,
            "c 1:3 rw\nc 1:5 r\n"
        );
        let check = |rule: &str| tool_os(&[arg("check"), cg_arg.into(), arg(rule)]).code;
        assert_eq!((check("c 1:3 rw"), check("c 1:5 w")), (0, 1));
        assert!(cg.allowed("rw:/dev/null"));
        assert!(!cg.allowed("w:/dev/zero"));
        tool_os(&[arg("detach"), cg_arg.into()]).ok();
        assert!(cg.attached().is_empty());
    }
    let mut missing = path.as_bytes().to_vec();
    missing.extend_from_slice(b"/gone");
    let missing = std::ffi::OsStr::from_bytes(&missing);
    tool_os(&["list".as_ref(), missing]).fails(1, &["vcg2-\\xff\\xfe-", "No such file"]);
    tool_os(&["check".as_ref(), missing, "c 1:3 r".as_ref()]).fails(3, &["vcg2-\\xff\\xfe-"]);
}

/// `list`, `check` and `explain` answer for a process in a cgroup below
/// the one with the program (QEMU's `emulator`); `--json` is one document,
/// its strings escaped (a cgroup name may hold `"` and `\`).
#[test]
fn explain_and_json_answer_for_a_process_below() {
    let Some(mount) = privileged() else { return };
    let cg = Scratch::new(&mount);
    let below = cg.path.join("em\"u\\lator");
    std::fs::create_dir(&below).unwrap();
    struct Rm(std::path::PathBuf);
    impl Drop for Rm {
        fn drop(&mut self) {
            remove_cgroup(&self.0);
        }
    }
    let _rm = Rm(below.clone());
    let b = below.to_str().unwrap();
    tool(&["deny", cg.p(), "a"]).ok();
    tool(&["allow", cg.p(), "c 1:3 rw", "c 136:* rw"]).ok();
    let id = cg.attached()[0];
    // 6, or 5 where the kernel (or its emulation) has no table.
    let format = {
        use std::os::fd::AsFd;
        use vircgroup_v2_devices::{program, sys};
        let fd = sys::prog_get_fd_by_id(id).unwrap();
        let name = sys::prog_info(fd.as_fd()).unwrap().name;
        if name == program::table::NAME {
            program::table::FORMAT
        } else {
            program::hash::FORMAT
        }
    };
    let out = tool(&["list", b]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "c 1:3 rw\nc 136:* rw\n"),
        "{out:?}"
    );
    let out = tool(&["check", b, "c 1:5 r"]);
    assert_eq!((out.code, out.stdout.as_str()), (1, "denied\n"), "{out:?}");
    let out = tool(&["explain", b, "c 136:7 w"]);
    out.ok();
    assert_eq!(
        out.stdout,
        format!(
            "cgroup={} prog={id} owner=vircgroup-v2-devices/{format} verdict=allow \
             rule=\"c 136:* rw\"\nresult=allowed\n",
            cg.p()
        )
    );
    let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    let out = tool(&["list", "--json", b]);
    out.ok();
    assert_eq!(
        out.stdout,
        format!(
            "{{\"cgroup\":\"{}\",\"restricted\":true,\"rules\":[\
             {{\"rule\":\"c 1:3 rw\",\"type\":\"c\",\"major\":1,\"minor\":3,\"access\":\"rw\"}},\
             {{\"rule\":\"c 136:* rw\",\"type\":\"c\",\"major\":136,\"minor\":null,\"access\":\"rw\"}}]}}\n",
            esc(b)
        )
    );
    let out = tool(&["explain", b, "--json", "c 1:5 r"]);
    out.ok();
    assert_eq!(
        out.stdout,
        format!(
            "{{\"cgroup\":\"{}\",\"rule\":\"c 1:5 r\",\"programs\":[{{\"cgroup\":\"{}\",\
             \"prog\":{id},\"owner\":\"vircgroup-v2-devices/{format}\",\"verdict\":\"deny\",\
             \"rule\":null}}],\"result\":\"denied\"}}\n",
            esc(b),
            esc(cg.p())
        )
    );
    // --json is for list and explain only.
    tool(&["check", "--json", b, "c 1:5 r"]).fails(2, &["unknown option '--json'"]);
}
