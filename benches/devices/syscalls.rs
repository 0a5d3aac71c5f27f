// SPDX-License-Identifier: LGPL-2.1-or-later
//! Steady state, every system call counted: what one allow or deny costs
//! in syscalls of any kind (bpf(2), the `stat` of the path that keeps the
//! state fresh, anything else), not only bpf(2).
//!
//! A child process (the benchmark re-executed) runs under Debian's
//! `strace -f`: it sets a cgroup up (deny all, `WARM` rules), runs the four
//! operations `STEPS` times each as a warm-up pass, then the same pass
//! again with a marker before each operation (a failing `access` of a path
//! under `/vcg2-bench-phase/`). Only the calls between two markers are
//! counted, so start-up, set-up and the warm-up (lazily made state, the
//! allocator's first growth) are left out; the map is never full nor grown
//! meanwhile (checked).

use crate::cases::*;
use crate::cgroups::*;
use crate::ours;
use crate::Res;
use std::collections::BTreeMap;
use std::ffi::CString;
use std::path::Path;
use std::process::{Command, ExitCode};
use vircgroup_v2_devices::rules::{RW, WRITE};

/// First argument of the benchmark re-executed as the counted child.
pub(crate) const STEADY_CHILD: &str = "__steady";

/// Rules held before and while counting.
pub(crate) const WARM: usize = 24;
/// Operations of each kind counted (on `STEPS` rules of their own).
pub(crate) const STEPS: usize = 24;
const MARK: &str = "/vcg2-bench-phase/";

/// One operation: its name in the report, the call and the permissions
/// (None: the rule's own, `rw`).
pub(crate) struct Op {
    pub(crate) name: &'static str,
    call: fn(&ours::Path, &Spec) -> Res<()>,
    perms: Option<i32>,
    /// What libvirt's C code does for it.
    pub(crate) libvirt: &'static str,
}

pub(crate) const OPS: [Op; 4] = [
    Op {
        name: "allow a new exact rule",
        call: ours::allow,
        perms: None,
        libvirt: "2 (lookup, update)",
    },
    Op {
        name: "allow a rule already held",
        call: ours::allow,
        perms: None,
        libvirt: "2 (lookup, update)",
    },
    Op {
        name: "deny `w` of an `rw` rule",
        call: ours::deny,
        perms: Some(WRITE),
        libvirt: "2 (lookup, update)",
    },
    Op {
        name: "deny `rw` of an `rw` rule (removed)",
        call: ours::deny,
        perms: Some(RW),
        libvirt: "2 (lookup, delete)",
    },
];

/// `__steady CGROUP`: the counted child (see the module's text).
pub(crate) fn steady_child(args: &[String]) -> ExitCode {
    let run = || -> Res<()> {
        let [path] = args else {
            return Err("expected CGROUP".into());
        };
        let path = ours::Path::new(path)?;
        let rules = fillers(WARM + STEPS);
        ours::deny_all(&path)?;
        for r in &rules[..WARM] {
            ours::allow(&path, r)?;
        }
        let (_, max) = ours::state(&path)?;
        for counted in [false, true] {
            for (i, op) in OPS.iter().enumerate() {
                if counted {
                    mark(i)?;
                }
                for r in &rules[WARM..] {
                    let perms = op.perms.unwrap_or(r.perms);
                    (op.call)(&path, &Spec { perms, ..*r })?;
                }
            }
            if counted {
                mark(OPS.len())?;
            }
        }
        let (count, max_after) = ours::state(&path)?;
        if max_after != max || count != WARM as isize {
            return Err(format!(
                "the map went from {max} to {max_after} entries, {count} rules left (expected {WARM})"
            )
            .into());
        }
        Ok(())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{STEADY_CHILD}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A syscall strace shows with its argument: where operation `i` starts.
fn mark(i: usize) -> Res<()> {
    let path = CString::new(format!("{MARK}{i}"))?;
    // SAFETY: a NUL-terminated string; the call only looks the path up.
    unsafe { libc::access(path.as_ptr(), libc::F_OK) };
    Ok(())
}

/// Syscalls per operation: (syscall, or `bpf CMD`) -> count over `STEPS`.
pub(crate) type Counts = Vec<BTreeMap<String, u64>>;

/// `strace -V`'s first line, or why strace cannot be used.
pub(crate) fn strace_version() -> Res<String> {
    let missing = "the steady-state syscall count needs Debian's strace \
                   (apt-get install strace; ./run-tests.sh installs it)";
    let out = Command::new("strace")
        .arg("-V")
        .output()
        .map_err(|e| format!("strace: {e}: {missing}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    match text.lines().next() {
        Some(line) if out.status.success() => Ok(line.trim().to_string()),
        _ => Err(format!("strace -V failed: {missing}").into()),
    }
}

/// Runs the counted child under `strace -f` on a new cgroup under
/// `parent` and counts each operation's syscalls.
pub(crate) fn steady(exe: &Path, parent: &Path) -> Res<Counts> {
    let mut cg = Cg::new(parent, "cp-steady")?;
    // The child's library attaches the program; the cleanup detaches it.
    cg.library()?;
    let log = std::env::temp_dir().join(unique("vcg2-bench-strace"));
    let out = Command::new("strace")
        .args(["-f", "-qq", "-o"])
        .arg(&log)
        .arg("--")
        .arg(exe)
        .args([STEADY_CHILD, cg.p()])
        .output();
    let text = std::fs::read_to_string(&log);
    let _ = std::fs::remove_file(&log);
    let out = out.map_err(|e| format!("strace: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!("strace -f {exe:?} {STEADY_CHILD}: {}", err.trim()).into());
    }
    let counts = parse(&text.map_err(|e| format!("{}: {e}", log.display()))?);
    if counts.len() != OPS.len() || counts.iter().any(BTreeMap::is_empty) {
        return Err("strace: the markers of the counted child are missing".into());
    }
    Ok(counts)
}

/// Counts each line of `strace -f` output (`PID name(args) = ret`) in the
/// operation its last marker started; a bpf(2) call by its command.
fn parse(log: &str) -> Counts {
    let mut counts: Counts = vec![BTreeMap::new(); OPS.len()];
    let mut op: Option<usize> = None;
    for line in log.lines() {
        let call = line.split_once(' ').map_or(line, |(_, rest)| rest).trim();
        // Signals, exits and the second half of an interrupted call.
        if call.starts_with("---") || call.starts_with("+++") || call.starts_with("<...") {
            continue;
        }
        let Some((name, args)) = call.split_once('(') else {
            continue;
        };
        if let Some(at) = args.find(MARK) {
            let digits: String = args[at + MARK.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            op = digits.parse().ok();
            continue;
        }
        if let Some(c) = op.and_then(|i| counts.get_mut(i)) {
            let key = match name {
                "bpf" => format!("bpf {}", args.split([',', ')']).next().unwrap_or("?")),
                other => other.to_string(),
            };
            *c.entry(key).or_default() += 1;
        }
    }
    counts
}

/// "2 (bpf BPF_PROG_QUERY 1, newfstatat 1)": per operation, over `STEPS`.
pub(crate) fn describe(counts: &BTreeMap<String, u64>) -> String {
    let each = |n: u64| {
        let per = n as f64 / STEPS as f64;
        if n % STEPS as u64 == 0 {
            format!("{per:.0}")
        } else {
            format!("{per:.2}")
        }
    };
    let parts: Vec<String> = counts
        .iter()
        .map(|(name, &n)| format!("{name} {}", each(n)))
        .collect();
    format!("{} ({})", each(counts.values().sum()), parts.join(", "))
}

/// Syscalls per operation.
pub(crate) fn per_op(counts: &BTreeMap<String, u64>) -> f64 {
    counts.values().sum::<u64>() as f64 / STEPS as f64
}
