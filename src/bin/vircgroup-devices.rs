// SPDX-License-Identifier: LGPL-2.1-or-later
//! `vircgroup-devices`: see and change the device policy (the BPF device
//! program) of any cgroup v2, run a command under a device policy, and the
//! README's demo. `vircgroup-devices --help` is the manual.
//!
//! Arguments are parsed by hand so that the library gains no dependency.
//! `list`, `check` and `explain` only read (`api::list`, `check`,
//! `explain`): looking at a VM's cgroup never replaces libvirt's program.
//! `--json` output is written here too (a few lines, strings escaped as
//! RFC 8259 says), no crate needed. `run` and `demo` block the
//! signals that end them, so a Ctrl-C or SIGTERM at any moment is forwarded
//! to the child and followed by the removal of the scratch cgroup.
#![forbid(unsafe_code)]

use nix::sys::signal::{kill, SigSet, Signal};
use nix::unistd::Pid;
use std::ffi::{OsStr, OsString};
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use vircgroup_v2_devices::api::{self, Edit, Explanation, Inspection, Program};
use vircgroup_v2_devices::cgroup::cgroup2_mount;
use vircgroup_v2_devices::rollback;
use vircgroup_v2_devices::rules::{self, Rule};

const NAME: &str = "vircgroup-devices";

const USAGE: &str = "\
Usage: vircgroup-devices COMMAND [ARG]...

See and change the device policy of a cgroup v2: the BPF device program that
libvirt (or this library) attaches to a VM's cgroup.

Commands:
  list [--json] CGROUP  print the rules in force for a process in CGROUP
                        (every device program on the way), in cgroup v1
                        devices.list format
  allow CGROUP RULE...  allow devices
  deny CGROUP RULE...   deny devices ('deny CGROUP a' denies every device)
  check CGROUP RULE     print allowed or denied for a process in CGROUP
                        (exit status 0 or 1; 2 or 3 on an error)
  explain [--json] CGROUP RULE
                        why: each device program the kernel runs for a
                        process in CGROUP, from the root down, its owner,
                        verdict and the rule that granted the access
  detach CGROUP         detach the device program: every device is allowed
  to-libvirt CGROUP     replace this library's program by libvirt's own, with
                        the same rules (before going back to stock libvirt)
  run [--allow RULE]... [--qemu-defaults] -- COMMAND...
                        run COMMAND in a scratch cgroup that denies every
                        device but those allowed, then remove the cgroup;
                        not a sandbox: COMMAND runs as root with every
                        capability and can move itself out of the cgroup
  demo                  a child denied /dev/zero and allowed /dev/null

CGROUP is a path relative to the cgroup2 mount ('machine/vm1.scope'), an
absolute path, or a path copied from /proc/PID/cgroup: its line '0::/PATH'
or '/PATH' (read under the cgroup2 mount when no '/PATH' exists; a note
says which path was used). It may hold any bytes a cgroup's name can;
messages show control characters and bytes that are not UTF-8 escaped.
A command given several RULEs applies all of them or none.
RULE is one argument (quote it), read as cgroup v1's devices.allow and
devices.deny read it:
  'TYPE MAJOR:MINOR PERMS'  TYPE b (block) or c (char); MAJOR and MINOR
                            decimal numbers or *; PERMS some of r, w, m
                            ('c 1:3 rw', 'b 8:* r', 'c *:* m')
  'a' or 'a *:* rwm'        every device; v1 reads every rule starting with
                            'a' as every device, so 'a' with numbers is
                            refused: write 'c 1:3 r' and 'b 1:3 r' instead
  'PATH PERMS'              the device node at PATH ('/dev/kvm rw')

--json (list, explain) prints one JSON document instead, for scripts:
  list     {\"cgroup\": PATH, \"restricted\": BOOL, \"rules\": [{\"rule\": \"c 1:* rw\",
           \"type\": \"c\", \"major\": 1, \"minor\": null, \"access\": \"rw\"}, ...]}
           (null is *; an unrestricted cgroup lists the one rule 'a *:* rwm')
  explain  {\"cgroup\": PATH, \"rule\": RULE, \"programs\": [{\"cgroup\": PATH,
           \"prog\": ID, \"owner\": OWNER, \"verdict\": \"allow\" or \"deny\",
           \"rule\": LINE or null}, ...], \"result\": \"allowed\" or \"denied\"}
'explain' and 'check' answer for a process in CGROUP: the kernel runs the
device program of CGROUP and of each ancestor (libvirt's QEMU runs in
'.../emulator', below its program; systemd may attach one to a slice), and
an access must pass every one. See 'vircgroup-devices explain --help'.

Exit status: 0 done, 1 failed, 2 usage error; run exits with the command's
status. check exits 0 when allowed, 1 when denied, 2 on a usage error and 3
on any other error: never 1 on an error.
'vircgroup-devices COMMAND --help' describes each command.
";

const LIST_HELP: &str = "\
Usage: vircgroup-devices list [--json] CGROUP

Prints the rules in force for a process in CGROUP, one per line in cgroup
v1 devices.list format, sorted ('c 1:3 rw'): the kernel runs the device
program of CGROUP and those of its ancestors (libvirt's QEMU runs in
'.../emulator', below the cgroup its program is on; systemd attaches its own
to a slice), and an access must pass each of them, so the rules are what
all of them allow. Both this library's programs and the one libvirt's C
code attaches are read, without changing anything. With no device program
on the way, every device is allowed: prints 'a *:* rwm' and says so. Fails
(naming it) when a program on the way is someone else's (systemd's, a
container runtime's): its rules cannot be read, but 'check' and 'explain'
still answer for one device.

A line can be narrower than any rule of one program: 'c 1:3 r' and
'c 1:3 w' on two lines mean each alone is allowed, not both at once.

  --json   one JSON document: {\"cgroup\": PATH, \"restricted\": BOOL,
           \"rules\": [{\"rule\": \"c 1:* rw\", \"type\": \"c\", \"major\": 1,
           \"minor\": null, \"access\": \"rw\"}, ...]} (null is *)
";

const ALLOW_HELP: &str = "\
Usage: vircgroup-devices allow CGROUP RULE...

Adds permissions (as in cgroup v1, 'r' then 'w' gives 'rw'). 'a' (or
'a *:* rwm') allows every device: the rules 'b *:* rwm' and 'c *:* rwm'.
Every RULE is checked before anything changes, and all of them are applied
in one step or none is (more rules than a map can hold change nothing). A
program of libvirt's C code is replaced by this library's, with the same
rules, in one step.

CGROUP must already have a device program: on a cgroup that has none, every
device is allowed, and allowing one device would deny all others. To
restrict such a cgroup, deny every device first:
  vircgroup-devices deny CGROUP a
  vircgroup-devices allow CGROUP 'c 1:3 rw' '/dev/kvm rw'
";

const DENY_HELP: &str = "\
Usage: vircgroup-devices deny CGROUP RULE...

Removes permissions from that exact rule ('deny CGROUP \"c 1:3 w\"' turns
'c 1:3 rw' into 'c 1:3 r'; a rule left with no permission is removed).
'a' denies every device, and so does 'a *:* rwm' (in cgroup v1 a rule
starting with 'a' is every device, whatever permissions follow): it attaches
the device program if needed and removes every rule (cgroup v1's
'echo a > devices.deny'). Every RULE is checked before anything changes,
and all of them are applied in one step or none is.

The device program lists what is allowed, so on a cgroup with no device
program (every device allowed) a single device cannot be denied: deny 'a'
first, then allow what is needed.
";

const CHECK_HELP: &str = "\
Usage: vircgroup-devices check CGROUP RULE

Prints 'allowed' (exit status 0) when a process in CGROUP may make the
access RULE describes on every device it names, as the kernel decides: every
device program it runs there (CGROUP's own and its ancestors') allows it;
else 'denied' (exit status 1). 'check CGROUP \"c 1:3 rw\"' asks whether
/dev/null can be opened read-write. A program that is not this library's
nor libvirt's is run from its instructions as the kernel reports them; one
that cannot be evaluated is an error naming it, never a guess. Reads only.
'explain' says which program decided.

Exit status: 0 allowed, 1 denied, 2 usage error (a bad RULE, a missing
argument), 3 any other error (no such cgroup, a device program it cannot
evaluate): an error never exits 1, so a script can tell denied from failed.
";

const EXPLAIN_HELP: &str = "\
Usage: vircgroup-devices explain [--json] CGROUP RULE

Why the access RULE describes is allowed or denied for a process in CGROUP:
one line per device program the kernel runs there, from the root down,

  cgroup=PATH prog=ID owner=OWNER verdict=allow|deny[ rule=\"V1 LINE\"]

then 'result=allowed' or 'result=denied' (the answer 'check' gives). OWNER
is vircgroup-v2-devices/N (this library, program format N), libvirt
(libvirt's own C program) or other:NAME (anyone else's, by the name the
kernel shows, such as systemd's sd_devices); rule is the line that granted
the access, where the owner's rules are known. Exit status 0 whatever the
answer. Reads only.

  --json   one JSON document: {\"cgroup\": PATH, \"rule\": RULE,
           \"programs\": [{\"cgroup\": PATH, \"prog\": ID, \"owner\": OWNER,
           \"verdict\": \"allow\", \"rule\": \"c 1:* rw\" or null}, ...],
           \"result\": \"allowed\"}
";

const DETACH_HELP: &str = "\
Usage: vircgroup-devices detach CGROUP

Detaches the device program of this library or of libvirt's C code from
CGROUP: every device is allowed again. A program it does not recognise is
left alone (an error names it).
";

const TO_LIBVIRT_HELP: &str = "\
Usage: vircgroup-devices to-libvirt CGROUP

Converts CGROUP from this library's device program to the program and map
of libvirt's own C code, with the same rules, in one step: run it on each
running VM's cgroup after stopping the patched daemon and before starting
stock libvirt (whose hot-plug would otherwise be denied: it writes its own
encoding into the first map it finds). The map is sized as libvirt sizes
it. Refused, changing nothing, when a 'b' and a 'c' rule on the same numbers
have different permissions (libvirt keeps one value per numbers; the error
names the rules), or when CGROUP has no program of this library.
";

const RUN_HELP: &str = "\
Usage: vircgroup-devices run [--allow RULE]... [--qemu-defaults] [--] COMMAND [ARG]...

Creates a scratch cgroup under the cgroup2 mount, denies every device there,
allows each --allow RULE, runs COMMAND inside it and exits with its exit
status (128+N when a signal N ended it). The cgroup is removed afterwards,
with any process COMMAND left in it, also when this command gets SIGINT
(Ctrl-C), SIGTERM, SIGHUP or SIGQUIT: the signal is forwarded to COMMAND
first. Only SIGKILL leaves the cgroup behind.

  --allow RULE      allow RULE (repeatable)
  --qemu-defaults   allow libvirt's default cgroup_device_acl (qemu.conf)
                    and the ptys, by device number (the kernel's fixed
                    numbers, so that a node missing from /dev, such as
                    /dev/kvm without the kvm module, still gets its rule):
                      c 1:3 rw    /dev/null      c 1:9 rw    /dev/urandom
                      c 1:7 rw    /dev/full      c 5:2 rw    /dev/ptmx
                      c 1:5 rw    /dev/zero      c 10:232 rw /dev/kvm
                      c 1:8 rw    /dev/random    c 136:* rw  /dev/pts/*

Exit status 125 when COMMAND could not be started in the cgroup, 126 when
it is not executable, 127 when it is not found.

run is not a sandbox: COMMAND runs as root (as this tool does) with every
capability, so it can move itself, or start processes, out of the scratch
cgroup (writing to any cgroup.procs), change or detach the cgroup's device
program, or create device nodes and open them from elsewhere. The device
policy binds a COMMAND that does not try to leave it, such as a test of
what a VM's QEMU may open; to confine an untrusted program, drop its
privileges too (setpriv, a user namespace, a systemd unit's User=).
";

const DEMO_HELP: &str = "\
Usage: vircgroup-devices demo

In a scratch cgroup under the cgroup2 mount: a child opens /dev/null and
/dev/zero (both allowed), every device is denied but /dev/null, the rules
are listed, a child tries again (/dev/zero denied), and the cgroup is
removed. Needs root; takes well under a second.
";

/// QEMU's devices: libvirt's default `cgroup_device_acl` and the ptys.
const QEMU_DEFAULTS: [&str; 8] = [
    "c 1:3 rw",    // /dev/null
    "c 1:7 rw",    // /dev/full
    "c 1:5 rw",    // /dev/zero
    "c 1:8 rw",    // /dev/random
    "c 1:9 rw",    // /dev/urandom
    "c 5:2 rw",    // /dev/ptmx
    "c 10:232 rw", // /dev/kvm
    "c 136:* rw",  // /dev/pts/*
];

/// Why a command failed; `main` prints it as one line.
enum Fail {
    /// Bad command line: exit status 2.
    Usage(String),
    /// Anything else: exit status 1.
    Failed(String),
}

type Res<T> = Result<T, Fail>;

impl From<vircgroup_v2_devices::Error> for Fail {
    fn from(e: vircgroup_v2_devices::Error) -> Self {
        Fail::Failed(e.to_string())
    }
}

fn failed(msg: impl std::fmt::Display) -> Fail {
    Fail::Failed(msg.to_string())
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    match dispatch(&args) {
        Ok(code) => ExitCode::from(code),
        // One line, whatever the arguments held.
        Err(Fail::Usage(msg)) => {
            eprintln!("{NAME}: {}", rules::printable(&msg));
            ExitCode::from(2)
        }
        Err(Fail::Failed(msg)) => {
            eprintln!("{NAME}: {}", rules::printable(&msg));
            // check's 1 means denied: its errors are 3, never 1.
            let check = args.first().and_then(|c| c.to_str()) == Some("check");
            ExitCode::from(if check { 3 } else { 1 })
        }
    }
}

/// `args` as UTF-8 strings (every argument but `run`'s COMMAND).
fn strings(args: &[OsString]) -> Res<Vec<&str>> {
    args.iter()
        .map(|a| {
            a.to_str()
                .ok_or_else(|| Fail::Usage(format!("argument {a:?} is not valid UTF-8")))
        })
        .collect()
}

/// Runs `cmd` (not `run`) on CGROUP `cg` and the other arguments.
fn command(cmd: &str, cg: Option<&std::ffi::OsStr>, args: &[&str], json: bool) -> Res<u8> {
    let usage = |what: &str| Fail::Usage(format!("{cmd}: {what} (see '{NAME} {cmd} --help')"));
    match (cmd, cg, args) {
        ("demo", None, []) => demo(),
        ("list", Some(cg), []) => list(&cgroup_path(cg)?, json),
        ("explain", Some(cg), [rule]) => {
            let rule = parse_rule(rule)?;
            explain(&cgroup_path(cg)?, &rule, json)
        }
        ("detach", Some(cg), []) => detach(&cgroup_path(cg)?),
        ("to-libvirt", Some(cg), []) => to_libvirt(&cgroup_path(cg)?),
        ("check", Some(cg), [rule]) => {
            let rule = parse_rule(rule)?;
            check(&cgroup_path(cg)?, &rule)
        }
        ("allow" | "deny", Some(cg), rules) if !rules.is_empty() => {
            // Rules first: a usage error before any note about CGROUP.
            let changes = rules
                .iter()
                .map(|r| parse_change(r, cmd == "allow"))
                .collect::<Res<Vec<_>>>()?;
            change(&cgroup_path(cg)?, cg, &changes)
        }
        ("demo", ..) => Err(usage("takes no argument")),
        ("list" | "detach" | "to-libvirt", ..) => Err(usage("expected CGROUP")),
        ("check" | "explain", ..) => Err(usage("expected CGROUP and one RULE")),
        _ => Err(usage("expected CGROUP and at least one RULE")),
    }
}

/// `help [COMMAND]`: the manual, or one command's.
fn print_help(rest: &[OsString]) -> Res<u8> {
    let help = match strings(rest)?.first() {
        None => USAGE,
        Some(topic) => help_of(topic)
            .ok_or_else(|| Fail::Usage(format!("no command '{topic}' (see '{NAME} --help')")))?,
    };
    print!("{help}");
    Ok(0)
}

fn dispatch(args: &[OsString]) -> Res<u8> {
    let Some((cmd, rest)) = args.split_first() else {
        eprint!("{USAGE}");
        return Ok(2);
    };
    let cmd = strings(std::slice::from_ref(cmd))?[0];
    // Internal: the child side of `run` and `demo`.
    match cmd {
        "__join" => return Ok(join_and_exec(rest)),
        "__probe" => return Ok(probe(&strings(rest)?)),
        _ => {}
    }
    let help = match cmd {
        "-h" | "--help" | "help" => return print_help(rest),
        "-V" | "--version" => {
            println!("{NAME} {}", env!("CARGO_PKG_VERSION"));
            return Ok(0);
        }
        _ => help_of(cmd)
            .ok_or_else(|| Fail::Usage(format!("unknown command '{cmd}' (see '{NAME} --help')")))?,
    };
    if cmd == "run" {
        return run(cmd, rest);
    }
    // --json (list, explain) anywhere among the arguments.
    let json = matches!(cmd, "list" | "explain") && rest.iter().any(|a| a == "--json");
    let rest: Vec<OsString> = rest
        .iter()
        .filter(|a| !json || *a != "--json")
        .cloned()
        .collect();
    // CGROUP (the first argument) is bytes, as the kernel takes a cgroup's
    // name; every other argument is text.
    let texts: Vec<Option<&str>> = rest.iter().map(|a| a.to_str()).collect();
    if texts.iter().any(|a| matches!(a, Some("-h" | "--help"))) {
        print!("{help}");
        return Ok(0);
    }
    let usage = |what: &str| Fail::Usage(format!("{cmd}: {what} (see '{NAME} {cmd} --help')"));
    if let Some(opt) = texts
        .iter()
        .flatten()
        .find(|a| a.starts_with('-') && a.len() > 1)
    {
        return Err(usage(&format!("unknown option '{opt}'")));
    }
    let (cg, args) = match rest.split_first() {
        Some((cg, args)) => (Some(cg.as_os_str()), strings(args)?),
        None => (None, Vec::new()),
    };
    command(cmd, cg, &args, json)
}

fn help_of(cmd: &str) -> Option<&'static str> {
    Some(match cmd {
        "list" => LIST_HELP,
        "allow" => ALLOW_HELP,
        "deny" => DENY_HELP,
        "check" => CHECK_HELP,
        "explain" => EXPLAIN_HELP,
        "detach" => DETACH_HELP,
        "to-libvirt" => TO_LIBVIRT_HELP,
        "run" => RUN_HELP,
        "demo" => DEMO_HELP,
        _ => return None,
    })
}

/// `rel` (leading slashes dropped) under the cgroup2 mount.
fn under_mount(mount: &Path, rel: &[u8]) -> PathBuf {
    let rel = &rel[rel.iter().take_while(|&&b| b == b'/').count()..];
    mount.join(OsStr::from_bytes(rel))
}

/// Says on stderr that the CGROUP typed (`bytes`) is taken as `path`.
fn note(bytes: &[u8], path: &Path, why: &str) {
    eprintln!(
        "{NAME}: note: {} {why}: using {}",
        rules::quoted_bytes(bytes),
        rules::quoted_path(path)
    );
}

/// The cgroup of a `/proc/PID/cgroup` line of cgroup v2, `0::` then `rel`.
fn proc_line_path(bytes: &[u8], rel: &[u8]) -> Res<PathBuf> {
    let typed = || rules::quoted_bytes(bytes);
    if !rel.starts_with(b"/") {
        return Err(Fail::Usage(format!(
            "CGROUP {}: a /proc/PID/cgroup line of cgroup v2 is '0::/PATH'",
            typed()
        )));
    }
    let mount = cgroup2_mount().ok_or_else(|| failed("no cgroup2 filesystem is mounted"))?;
    let path = under_mount(&mount, rel);
    if !path.exists() {
        return Err(failed(format!(
            "cgroup path {} (of the /proc/PID/cgroup line {}): {}",
            rules::quoted_path(&path),
            typed(),
            nix::errno::Errno::ENOENT.desc()
        )));
    }
    note(bytes, &path, "is a /proc/PID/cgroup line");
    Ok(path)
}

/// CGROUP as an absolute path. A relative path is under the cgroup2 mount,
/// and so are the paths /proc/PID/cgroup shows: its cgroup v2 line
/// `0::/PATH`, or `/PATH` alone when no such absolute path exists but the
/// one under the mount does. A note on stderr says which path was used
/// when it is not the one typed. CGROUP is bytes (a cgroup's name need not
/// be UTF-8); messages show it escaped.
fn cgroup_path(arg: &OsStr) -> Res<PathBuf> {
    let bytes = arg.as_bytes();
    if bytes.is_empty() {
        return Err(Fail::Usage("CGROUP is empty".into()));
    }
    let typed = || rules::quoted_bytes(bytes);
    let mount = || cgroup2_mount().ok_or_else(|| failed("no cgroup2 filesystem is mounted"));
    if let Some(rel) = bytes.strip_prefix(b"0::") {
        return proc_line_path(bytes, rel);
    }
    if let Some((hierarchy, controllers)) = arg.to_str().and_then(v1_proc_line) {
        return Err(Fail::Usage(format!(
            "CGROUP {}: that is a cgroup v1 line of /proc/PID/cgroup (hierarchy \
             {hierarchy}, {controllers}); device programs are on cgroup v2: \
             take the line that starts with '0::'",
            typed()
        )));
    }
    let typed_path = Path::new(arg);
    if !bytes.starts_with(b"/") {
        return Ok(mount()?.join(typed_path));
    }
    let Some(mount) = cgroup2_mount() else {
        return Ok(typed_path.to_path_buf());
    };
    if typed_path.exists() || typed_path.starts_with(&mount) {
        return Ok(typed_path.to_path_buf());
    }
    let under = under_mount(&mount, bytes);
    if under.exists() {
        note(bytes, &under, "does not exist");
        return Ok(under);
    }
    Err(failed(format!(
        "cgroup path {}: {} (nor under the cgroup2 mount: {})",
        typed(),
        nix::errno::Errno::ENOENT.desc(),
        rules::quoted_path(&under)
    )))
}

/// (hierarchy, controllers) of a cgroup v1 line of /proc/PID/cgroup
/// (`5:devices:/machine`, `1:name=systemd:/`).
fn v1_proc_line(arg: &str) -> Option<(&str, &str)> {
    let (hierarchy, rest) = arg.split_once(':')?;
    let (controllers, path) = rest.split_once(':')?;
    let numeric = !hierarchy.is_empty() && hierarchy.bytes().all(|b| b.is_ascii_digit());
    (numeric && hierarchy != "0" && !controllers.is_empty() && path.starts_with('/'))
        .then_some((hierarchy, controllers))
}

/// A rule: cgroup v1 text (usage error when bad), or `PATH PERMS` for a
/// device node (stat()ed: a failure is not a usage error).
fn parse_rule(text: &str) -> Res<Rule> {
    let text = text.trim();
    if !text.starts_with('/') {
        return text
            .parse()
            .map_err(|e: vircgroup_v2_devices::Error| Fail::Usage(e.to_string()));
    }
    let invalid = |why: &dyn std::fmt::Display| {
        Fail::Usage(format!("invalid rule {}: {why}", rules::quoted(text)))
    };
    let (path, perms) = text
        .rsplit_once(char::is_whitespace)
        .ok_or_else(|| invalid(&"expected a device node and permissions ('/dev/kvm rw')"))?;
    let perms = rules::parse_perms(perms).map_err(|e| invalid(&e))?;
    let path = path.trim_end();
    api::device_rule(path, perms)?
        .ok_or_else(|| failed(format!("{} is not a device node", rules::quoted(path))))
}

/// A rule of `allow` or `deny`. As in cgroup v1, a rule of every device
/// (`a`, `a *:* PERMS`) denies every device whatever its permissions, and
/// allows every permission: so allowing it with fewer is refused.
fn parse_change(text: &str, allow: bool) -> Res<Edit> {
    let rule = parse_rule(text)?;
    Ok(match (allow, rule.every_device()) {
        (false, true) => Edit::DenyAll,
        (false, false) => Edit::Deny(rule),
        (true, true) if rule.perms != rules::RWM => {
            let each = |ty: &str| format!("'{ty} *:* {}'", rules::perms_text(rule.perms));
            return Err(Fail::Usage(format!(
                "invalid rule {}: in cgroup v1, allowing 'a' allows every device with \
                 every permission; write 'a' for that, or {} and {} for these \
                 permissions on every device",
                rules::quoted(text.trim()),
                each("b"),
                each("c")
            )));
        }
        (true, _) => Edit::Allow(rule),
    })
}

/// A rule of `allow` or `run --allow`.
fn parse_allow(text: &str) -> Res<Rule> {
    match parse_change(text, true)? {
        Edit::Allow(rule) => Ok(rule),
        Edit::Deny(_) | Edit::DenyAll => unreachable!("parse_change allows"),
    }
}

/// A cgroup's path as messages show it: control characters and bytes
/// that are not UTF-8 escaped.
fn show(cg: &Path) -> String {
    rules::printable_path(cg)
}

/// "device program 42 'foreign'", "device programs 42 'a', 43 ''".
fn describe(progs: &[Program]) -> String {
    let each: Vec<String> = progs
        .iter()
        .map(|p| format!("{} '{}'", p.id, p.name))
        .collect();
    let s = if progs.len() == 1 { "" } else { "s" };
    format!("device program{s} {}", each.join(", "))
}

fn unknown(cg: &Path, others: &[Program]) -> String {
    format!(
        "'{}' has {}, which this tool does not recognise (neither this library's nor libvirt's)",
        show(cg),
        describe(others)
    )
}

fn list(cg: &Path, json: bool) -> Res<u8> {
    let shown = show(cg);
    let rules = api::rules_in_force(cg)?;
    if json {
        let each: Vec<String> = match &rules {
            None => vec![json_rule(&Rule::new(b'a', -1, -1, rules::RWM)?)],
            Some(r) => {
                let mut r = r.clone();
                sort_rules(&mut r);
                r.iter().map(json_rule).collect()
            }
        };
        println!(
            "{{\"cgroup\":{},\"restricted\":{},\"rules\":[{}]}}",
            json_str(&show(cg)),
            rules.is_some(),
            each.join(",")
        );
        return Ok(0);
    }
    match rules {
        None => {
            eprintln!(
                "{NAME}: no device program applies to '{shown}' (nor to its ancestors): \
                 every device is allowed"
            );
            print!("{}", rules::UNRESTRICTED_LIST);
        }
        Some(r) => {
            let mut r = r.clone();
            sort_rules(&mut r);
            for rule in &r {
                println!("{rule}");
            }
            if r.is_empty() {
                eprintln!("{NAME}: no rule is in force for '{shown}': every device is denied");
            }
        }
    }
    Ok(0)
}

/// Sorted as `list` prints them (b then c, numbers, `*` last), each once.
fn sort_rules(r: &mut Vec<Rule>) {
    r.sort_by_key(|r| {
        (
            r.ty,
            r.major.unwrap_or(u32::MAX),
            r.minor.unwrap_or(u32::MAX),
            r.perms,
        )
    });
    r.dedup();
}

/// A JSON string: `"` and `\` escaped, control characters as `\uXXXX`.
fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_rule(r: &Rule) -> String {
    let num = |n: Option<u32>| n.map_or("null".to_string(), |n| n.to_string());
    format!(
        "{{\"rule\":{},\"type\":\"{}\",\"major\":{},\"minor\":{},\"access\":\"{}\"}}",
        json_str(&r.to_string()),
        r.ty.letter(),
        num(r.major),
        num(r.minor),
        rules::perms_text(r.perms)
    )
}

fn check(cg: &Path, rule: &Rule) -> Res<u8> {
    let allowed = api::check(cg, rule)?;
    println!("{}", if allowed { "allowed" } else { "denied" });
    Ok(if allowed { 0 } else { 1 })
}

fn explain(cg: &Path, rule: &Rule, json: bool) -> Res<u8> {
    let e: Explanation = api::explain(cg, rule)?;
    if !json {
        print!("{}", e.text());
        return Ok(0);
    }
    let each: Vec<String> = e
        .programs
        .iter()
        .map(|v| {
            format!(
                "{{\"cgroup\":{},\"prog\":{},\"owner\":{},\"verdict\":\"{}\",\"rule\":{}}}",
                json_str(&show(&v.cgroup)),
                v.id,
                json_str(&v.owner.to_string()),
                if v.allowed { "allow" } else { "deny" },
                v.rule.as_deref().map_or("null".to_string(), json_str)
            )
        })
        .collect();
    println!(
        "{{\"cgroup\":{},\"rule\":{},\"programs\":[{}],\"result\":\"{}\"}}",
        json_str(&show(cg)),
        json_str(&rule.to_string()),
        each.join(","),
        if e.allowed { "allowed" } else { "denied" }
    );
    Ok(0)
}

fn change(cg: &Path, arg: &OsStr, changes: &[Edit]) -> Res<u8> {
    let shown = show(cg);
    let seen = api::inspect(cg)?;
    if seen.rules.is_none() && !matches!(changes[0], Edit::DenyAll) {
        let why = if seen.others.is_empty() {
            format!("'{shown}' has no device program, so every device is allowed")
        } else {
            unknown(cg, &seen.others)
        };
        return Err(failed(format!(
            "{why}; a new program would deny every device but these: \
             run '{NAME} deny {} a' first",
            rules::printable_bytes(arg.as_bytes())
        )));
    }
    // All of them in one step, or none.
    api::change(cg, changes)?;
    Ok(0)
}

fn to_libvirt(cg: &Path) -> Res<u8> {
    let shown = show(cg);
    let done = rollback::to_libvirt(cg)?;
    println!(
        "'{shown}' now has libvirt's device program (id {}): {} rules, map of {}",
        done.prog_id, done.rules, done.max
    );
    Ok(0)
}

fn detach(cg: &Path) -> Res<u8> {
    let shown = show(cg);
    let Inspection {
        rules,
        libvirt,
        others,
    } = api::inspect(cg)?;
    let Some((prog, _)) = rules else {
        if !others.is_empty() {
            return Err(failed(format!(
                "{}: not detaching it",
                unknown(cg, &others)
            )));
        }
        println!("no device program is attached to '{shown}'");
        return Ok(0);
    };
    api::detach_prog(cg)?;
    let whose = if libvirt {
        "libvirt's"
    } else {
        "this library's"
    };
    println!("detached {whose} device program {} from '{shown}'", prog.id);
    if !others.is_empty() {
        println!("still attached: {}", describe(&others));
    }
    Ok(0)
}

/// `run`: options, then COMMAND.
fn run(cmd: &str, args: &[OsString]) -> Res<u8> {
    let usage = |what: String| Fail::Usage(format!("{cmd}: {what} (see '{NAME} {cmd} --help')"));
    let mut rules = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let Some(arg) = args[i].to_str() else { break };
        match arg {
            "-h" | "--help" => {
                print!("{RUN_HELP}");
                return Ok(0);
            }
            "--" => {
                i += 1;
                break;
            }
            "--qemu-defaults" => {
                for text in QEMU_DEFAULTS {
                    rules.push(parse_allow(text)?);
                }
            }
            "--allow" => {
                i += 1;
                let text = args
                    .get(i)
                    .ok_or_else(|| usage("--allow needs a RULE".into()))?;
                rules.push(parse_allow(strings(std::slice::from_ref(text))?[0])?);
            }
            _ if arg.starts_with("--allow=") => rules.push(parse_allow(&arg["--allow=".len()..])?),
            _ if arg.starts_with('-') => return Err(usage(format!("unknown option '{arg}'"))),
            _ => break,
        }
        i += 1;
    }
    let command = &args[i..];
    if command.is_empty() {
        return Err(usage("expected a COMMAND".into()));
    }

    let signals = Signals::block()?;
    let mut scratch = Scratch::create("run")?;
    api::deny_all(&scratch.path)?;
    for rule in &rules {
        api::allow(&scratch.path, rule)?;
    }
    let mut child = Command::new(self_exe()?)
        .arg("__join")
        .arg(&scratch.path)
        .args(command)
        .spawn()
        .map_err(|e| failed(format!("cannot start {NAME} again: {e}")))?;
    let status = signals.wait_forwarding(&mut child)?;
    scratch.remove()?;
    Ok(status
        .code()
        .map_or_else(|| 128 + status.signal().unwrap_or(0) as u8, |c| c as u8))
}

/// The child of `run`: joins the cgroup, then becomes COMMAND.
fn join_and_exec(args: &[OsString]) -> u8 {
    let [cg, command, rest @ ..] = args else {
        eprintln!("{NAME}: __join: expected CGROUP COMMAND...");
        return 125;
    };
    let procs = PathBuf::from(cg).join("cgroup.procs");
    if let Err(e) = std::fs::write(&procs, "0") {
        eprintln!("{NAME}: cannot join {}: {e}", procs.display());
        return 125;
    }
    // The mask of the parent, which blocks the signals it forwards, is
    // inherited through fork and exec: COMMAND must get them. (exec()
    // restores SIGPIPE, which Rust ignores.)
    if let Err(e) = Signals::set().thread_unblock() {
        eprintln!("{NAME}: cannot unblock signals: {e}");
        return 125;
    }
    let e = Command::new(command).args(rest).exec();
    eprintln!("{NAME}: cannot run {command:?}: {e}");
    if e.kind() == ErrorKind::NotFound {
        127
    } else {
        126
    }
}

fn self_exe() -> Res<PathBuf> {
    std::env::current_exe().map_err(|e| failed(format!("cannot find {NAME} itself: {e}")))
}

/// The signals that end `run` and `demo`, blocked while they run so that
/// none can come between creating the scratch cgroup and removing it; `run`
/// waits for them and forwards them to its child.
struct Signals(SigSet);

impl Signals {
    fn set() -> SigSet {
        let mut set = SigSet::empty();
        for sig in [
            Signal::SIGINT,
            Signal::SIGTERM,
            Signal::SIGHUP,
            Signal::SIGQUIT,
            Signal::SIGCHLD,
        ] {
            set.add(sig);
        }
        set
    }

    fn block() -> Res<Signals> {
        let set = Signals::set();
        set.thread_block()
            .map_err(|e| failed(format!("cannot block signals: {e}")))?;
        Ok(Signals(set))
    }

    /// Waits for `child`, forwarding every signal but SIGCHLD to it.
    fn wait_forwarding(&self, child: &mut Child) -> Res<ExitStatus> {
        let pid = Pid::from_raw(child.id() as i32);
        loop {
            if let Some(status) = child
                .try_wait()
                .map_err(|e| failed(format!("waitpid({pid}): {e}")))?
            {
                return Ok(status);
            }
            match self.0.wait() {
                Ok(Signal::SIGCHLD) => {}
                // Not reaped yet, so the pid is still the child's.
                Ok(sig) => {
                    let _ = kill(pid, sig);
                }
                Err(e) => return Err(failed(format!("sigwait: {e}"))),
            }
        }
    }

    /// Delivers what arrived meanwhile: an interrupted demo ends now.
    fn unblock(self) {
        let _ = self.0.thread_unblock();
    }
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A cgroup made for `run` or `demo` under the cgroup2 mount, removed with
/// whatever runs in it by `remove`, or on drop.
struct Scratch {
    path: String,
    removed: bool,
}

impl Scratch {
    fn create(what: &str) -> Res<Scratch> {
        let mount = cgroup2_mount().ok_or_else(|| failed("no cgroup2 filesystem is mounted"))?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "{NAME}-{what}-{}-{}-{nanos:x}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let path = mount.join(name).to_string_lossy().into_owned();
        std::fs::create_dir(&path).map_err(|e| {
            let hint = match e.kind() {
                ErrorKind::PermissionDenied => " (run as root)",
                _ => "",
            };
            failed(format!("cannot create the cgroup '{path}': {e}{hint}"))
        })?;
        Ok(Scratch {
            path,
            removed: false,
        })
    }

    /// Kills what is left in the cgroup (cgroup.kill, or before Linux 5.14
    /// SIGKILL to each process in cgroup.procs) and removes it.
    fn remove(&mut self) -> Res<()> {
        self.removed = true;
        let _ = api::remove_prog(&self.path);
        let mut killed = false;
        for _ in 0..250 {
            match std::fs::remove_dir(&self.path) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    if !killed {
                        killed = std::fs::write(format!("{}/cgroup.kill", self.path), "1").is_ok();
                    }
                    if !killed {
                        // No cgroup.kill: each process, again until none
                        // is left (a fork in between is caught next time).
                        let procs = std::fs::read_to_string(format!("{}/cgroup.procs", self.path))
                            .unwrap_or_default();
                        for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                            let _ = nix::sys::signal::kill(
                                nix::unistd::Pid::from_raw(pid),
                                nix::sys::signal::Signal::SIGKILL,
                            );
                        }
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => return Err(failed(format!("cannot remove '{}': {e}", self.path))),
            }
        }
        Err(failed(format!(
            "cannot remove '{}': processes are still in it",
            self.path
        )))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !self.removed {
            if let Err(Fail::Failed(msg) | Fail::Usage(msg)) = self.remove() {
                eprintln!("{NAME}: {msg}");
            }
        }
    }
}

fn demo() -> Res<u8> {
    let signals = Signals::block()?;
    let mut scratch = Scratch::create("demo")?;
    let cg = scratch.path.clone();
    // CGROUP relative to the cgroup2 mount, as an admin would type it.
    let name = &cg[cg.rfind('/').map_or(0, |i| i + 1)..];
    let devs = ["/dev/null", "/dev/zero"];
    println!("A scratch cgroup: {cg}");
    println!("\nNo device program yet, so every device is allowed:");
    let before = demo_probe(&cg, &devs)?;
    println!("\nDeny every device, then allow /dev/null (c 1:3):");
    println!("  $ {NAME} deny {name} a");
    api::deny_all(&cg)?;
    println!("  $ {NAME} allow {name} 'c 1:3 rw'");
    api::allow(&cg, &"c 1:3 rw".parse()?)?;
    println!("  $ {NAME} list {name}");
    let seen = api::inspect(&cg)?;
    let entries = seen.rules.map(|r| r.1).unwrap_or_default();
    for line in rules::list_text(&entries).lines() {
        println!("  {line}");
    }
    println!("\nThe kernel now runs the device program on every access:");
    let after = demo_probe(&cg, &devs)?;
    scratch.remove()?;
    println!("\nRemoved {cg}.");
    signals.unblock();
    if before != ["allowed", "allowed"] || after != ["allowed", "denied"] {
        return Err(failed(format!(
            "unexpected: before {before:?}, after {after:?} (expected /dev/null allowed, \
             /dev/zero denied after)"
        )));
    }
    Ok(0)
}

/// A child in `cg` opens each device for reading: "allowed" or "denied"
/// (or the error) per device, printed and returned.
fn demo_probe(cg: &str, devs: &[&str]) -> Res<Vec<String>> {
    let out = Command::new(self_exe()?)
        .arg("__probe")
        .arg(cg)
        .args(devs)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| failed(format!("cannot start {NAME} again: {e}")))?;
    if !out.status.success() {
        return Err(failed(format!(
            "the child in '{cg}' failed ({})",
            out.status
        )));
    }
    let results: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    for (dev, result) in devs.iter().zip(&results) {
        let why = if result == "denied" { " (EPERM)" } else { "" };
        println!("  a child opens {dev}: {result}{why}");
    }
    Ok(results)
}

/// The child of `demo`: joins the cgroup, opens each path for reading.
fn probe(args: &[&str]) -> u8 {
    let Some((cg, paths)) = args.split_first() else {
        return 125;
    };
    if let Err(e) = std::fs::write(format!("{cg}/cgroup.procs"), "0") {
        eprintln!("{NAME}: cannot join '{cg}': {e}");
        return 125;
    }
    for path in paths {
        match std::fs::File::open(path) {
            Ok(_) => println!("allowed"),
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => println!("denied"),
            Err(e) => println!("{e}"),
        }
    }
    0
}
