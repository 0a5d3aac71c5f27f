// SPDX-License-Identifier: LGPL-2.1-or-later
//! The library against the kernel's own cgroup v1 devices controller, on
//! seeded random call sequences.
//!
//! Each case is a sequence of the calls libvirt makes (allow and deny of a
//! `b` or `c` rule, or of `a` for both types, on numbers or wildcards;
//! allow-all; deny-all), applied twice:
//!
//! - to a fresh child of the cgroup v1 devices root, denied by default
//!   first (`a` written to its `devices.deny`), as libvirt's v1 backend
//!   writes them (`src/util/vircgroupv1.c`): `TYPE MAJOR:MINOR PERMS` to
//!   `devices.allow` or `devices.deny`, allow-all as `b *:* PERMS` and
//!   `c *:* PERMS`, deny-all as `a` to `devices.deny`. An `a` rule on
//!   numbers is written as its `b` and `c` rules: the C API's `a` is both
//!   types, while v1 reads a line starting with `a` as every device;
//! - through the C API to a fresh cgroup v2 cgroup (reset by
//!   `deny_all_devices` first, or restricted by its first call).
//!
//! A few cases make no call at all: the v1 child is left as created
//! (allowing everything) and the v2 cgroup has no program.
//!
//! Then three things must agree:
//!
//! - the kernel's answers to a probe in each (vcg2-probe: open `r`, `w`,
//!   `rw`, `access(F_OK)`, mknod in a temporary directory) on block and
//!   char nodes that hit exact rules, `M:*`, `*:m` and `*:*` rules, and no
//!   rule. A process is in one cgroup of each hierarchy and the kernel
//!   checks both, so the v1 probe sits in a v2 cgroup with no program and
//!   the v2 probe in the v1 root (which allows everything). The results
//!   must be the same strings (EPERM is a denial; a node without a driver
//!   opens with ENXIO once past the cgroup);
//! - `vircgroup_v2_devices_check` with the kernel's v1 answer, for every
//!   probed access the kernel checks (0:0 has exceptions, see
//!   `kernel_checks`), as `b`, `c` and `a` (both);
//! - `vircgroup_v2_devices_list` with v1's `devices.list`, as sets of lines.
//!
//! ```sh
//! cargo test --test v1                       # 1,000 cases, fixed seed
//! V1_CASES=10000 cargo test --test v1        # N cases
//! V1_SEED=0x1234 cargo test --test v1        # another seed; `random` picks one
//! V1_REPLAY=0x... cargo test --test v1       # one case, by the seed a failure prints
//! ```
//!
//! Nested cgroups (a parent and a child made after its rules, calls on
//! both afterwards) are compared the same way by the `nested` cases, on
//! the cases where v1 keeps the intersection of the two; see `nested` and
//! `nested_cases_where_v1_differs` for the others.
//!
//! A disagreement is shrunk to the fewest calls that still disagree and
//! reported with the case seed. The v1 devices mount is found in
//! `/proc/self/mountinfo`; without one (or without root) the test is
//! skipped with the reason, and under CI=true it fails instead.

mod common;

use ::vircgroup_v2_devices::capi::*;
use ::vircgroup_v2_devices::cgroup::Cgroup;
use common::cases::{
    ddmin, kernel_checks, perms_text, random_major, run_seeds, verdict, Access, Hot, NodeCache,
    Probe, Rng, Settings, Spec, Ty, MAX_MINOR,
};
use common::{capi_list as list, last_error, privileged, remove_cgroup, Scratch};
use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

const DEFAULT_CASES: u64 = 1000;
const DEFAULT_SEED: u64 = 0x0c9a_0001_de71_ce5e;
/// Shards of the run, one #[test] each, run in parallel.
const SHARDS: u64 = 4;

/// Where the cgroup v1 devices controller is mounted: the first `cgroup`
/// filesystem in `/proc/self/mountinfo` whose options name `devices`.
fn v1_devices_mount() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|line| {
        // "id parent major:minor root mount-point options ... - fstype source super-options"
        let (left, right) = line.split_once(" - ")?;
        let mount = left.split_whitespace().nth(4)?;
        let mut fields = right.split_whitespace();
        let (fstype, options) = (fields.next()?, fields.nth(1)?);
        (fstype == "cgroup" && options.split(',').any(|o| o == "devices"))
            .then(|| PathBuf::from(mount))
    })
}

/// (cgroup2 mount, v1 devices mount) when the test can run; else None
/// after printing why, or a panic under CI=true.
fn mounts() -> Option<(PathBuf, PathBuf)> {
    let v2 = privileged()?;
    if let Some(v1) = v1_devices_mount() {
        return Some((v2, v1));
    }
    let reason = "no cgroup v1 devices controller is mounted (none in /proc/self/mountinfo)";
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("the cgroup v1 differential test cannot run under CI=true: {reason}");
    }
    eprintln!("SKIPPED: {reason}");
    None
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A child of the v1 devices root made for one case, removed on drop
/// whether the case passed or not.
struct V1Cgroup {
    path: PathBuf,
}

impl V1Cgroup {
    fn new(mount: &Path) -> V1Cgroup {
        let name = format!(
            "vcg2-v1-test-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let path = mount.join(name);
        std::fs::create_dir(&path).expect("create a v1 devices cgroup");
        V1Cgroup { path }
    }

    /// Writes `line` to `devices.allow` or `devices.deny` (`file`).
    fn write(&self, file: &str, line: &str) -> Result<(), String> {
        std::fs::write(self.path.join(file), line)
            .map_err(|e| format!("writing '{line}' to v1's {file}: {e}"))
    }

    fn list(&self) -> Result<Vec<String>, String> {
        std::fs::read_to_string(self.path.join("devices.list"))
            .map(|s| s.lines().map(str::to_string).collect())
            .map_err(|e| format!("reading v1's devices.list: {e}"))
    }
}

impl Drop for V1Cgroup {
    fn drop(&mut self) {
        remove_cgroup(&self.path);
    }
}

/// A call libvirt makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Allow(Spec),
    Deny(Spec),
    AllowAll(u8),
    DenyAll,
}

impl Call {
    /// What libvirt's v1 backend writes for it: (file, line) each.
    fn v1_writes(&self) -> Vec<(&'static str, String)> {
        let each_type = |file, s: &Spec| -> Vec<(&'static str, String)> {
            let types: &[u8] = if s.ty == b'a' { b"bc" } else { &[s.ty] };
            types
                .iter()
                .map(|&ty| (file, Spec { ty, ..*s }.to_string()))
                .collect()
        };
        match self {
            Call::Allow(s) => each_type("devices.allow", s),
            Call::Deny(s) => each_type("devices.deny", s),
            Call::AllowAll(p) => ["b", "c"]
                .iter()
                .map(|t| ("devices.allow", format!("{t} *:* {}", perms_text(*p))))
                .collect(),
            Call::DenyAll => vec![("devices.deny", "a".to_string())],
        }
    }

    /// The same call through the C API.
    fn apply_v2(&self, path: &CStr) -> Result<(), String> {
        let n = |n: Option<u32>| n.map_or(-1, |n| n as i32);
        type RuleCall =
            unsafe extern "C" fn(*const libc::c_char, libc::c_char, i32, i32, i32) -> i32;
        let rule = |f: RuleCall, s: Spec| {
            // SAFETY: `path` is a valid C string.
            unsafe {
                f(
                    path.as_ptr(),
                    s.ty as _,
                    n(s.major),
                    n(s.minor),
                    s.perms.into(),
                )
            }
        };
        let ret = match *self {
            Call::Allow(s) => rule(vircgroup_v2_allow_device, s),
            Call::Deny(s) => rule(vircgroup_v2_deny_device, s),
            // SAFETY: `path` is a valid C string.
            Call::AllowAll(p) => unsafe { vircgroup_v2_allow_all_devices(path.as_ptr(), p.into()) },
            // SAFETY: as above.
            Call::DenyAll => unsafe { vircgroup_v2_deny_all_devices(path.as_ptr()) },
        };
        if ret == 0 {
            Ok(())
        } else {
            Err(format!("{self} failed: {}", last_error()))
        }
    }
}

impl std::fmt::Display for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Call::Allow(s) => write!(f, "allow_device {s}"),
            Call::Deny(s) => write!(f, "deny_device {s}"),
            Call::AllowAll(p) => write!(f, "allow_all_devices {}", perms_text(*p)),
            Call::DenyAll => write!(f, "deny_all_devices"),
        }
    }
}

/// How a case's cgroups start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// v1: `a` to `devices.deny`; v2: `deny_all_devices`; then the calls.
    DenyAll,
    /// v1: `a` to `devices.deny`; v2: the first call attaches the program
    /// (with no call, `deny_all_devices` does).
    Fresh,
    /// No call at all: both allow every device.
    Untouched,
}

#[derive(Debug, Clone)]
struct Case {
    seed: u64,
    start: Start,
    calls: Vec<Call>,
    /// Probed as block and char devices.
    devices: Vec<(u32, u32)>,
}

impl Case {
    fn new(seed: u64) -> Case {
        let mut rng = Rng(seed);
        let start = match rng.below(100) {
            0..=2 => Start::Untouched,
            3..=30 => Start::Fresh,
            _ => Start::DenyAll,
        };
        let (n_calls, wide) = match rng.below(100) {
            _ if start == Start::Untouched => (0, false),
            0..=2 => (0, false),
            3..=84 => (rng.range(1, 16), false),
            85..=94 => (rng.range(17, 40), false),
            // Past the first map's 64 entries.
            _ => (rng.range(70, 120), true),
        };
        let hot = Hot::new(&mut rng, wide);
        let mut specs: Vec<Spec> = Vec::new();
        let mut calls = Vec::new();
        for _ in 0..n_calls {
            let call = match rng.below(100) {
                0..=2 if !wide => Call::DenyAll,
                3..=7 => Call::AllowAll(rng.range(1, 7) as u8),
                r if r < if wide { 85 } else { 65 } => Call::Allow(hot.spec(&mut rng)),
                _ => Call::Deny(hot.deny_spec(&mut rng, &specs)),
            };
            if let Call::Allow(s) | Call::Deny(s) = call {
                specs.push(s);
            }
            calls.push(call);
        }
        let devices = devices_for(&mut rng, &specs, &hot);
        Case {
            seed,
            start,
            calls,
            devices,
        }
    }
}

/// Devices that hit each rule exactly, through its wildcards alone (numbers
/// no rule names filled in), and no rule; and some at the edges.
fn devices_for(rng: &mut Rng, specs: &[Spec], hot: &Hot) -> Vec<(u32, u32)> {
    let named_majors: HashSet<u32> = specs.iter().filter_map(|s| s.major).collect();
    let named_minors: HashSet<u32> = specs.iter().filter_map(|s| s.minor).collect();
    let free_major = |rng: &mut Rng| loop {
        let m = random_major(rng);
        if !named_majors.contains(&m) {
            return m;
        }
    };
    let free_minor = |rng: &mut Rng| loop {
        let m = rng.range(0, MAX_MINOR as u64) as u32;
        if !named_minors.contains(&m) {
            return m;
        }
    };
    let mut devices = vec![(free_major(rng), free_minor(rng))];
    for _ in 0..rng.range(4, 9) {
        let d = match rng.below(100) {
            0..=64 if !specs.is_empty() => {
                let s = rng.pick(specs);
                (
                    s.major.unwrap_or_else(|| free_major(rng)),
                    s.minor.unwrap_or_else(|| free_minor(rng)),
                )
            }
            0..=74 => (rng.pick(&hot.majors), rng.pick(&hot.minors)),
            75..=84 => (rng.pick(&hot.majors), free_minor(rng)),
            85..=89 => (free_major(rng), rng.pick(&hot.minors)),
            _ => {
                let edge_minor = (0, rng.pick(&hot.minors));
                rng.pick(&[(0, 0), (4095, MAX_MINOR), edge_minor])
            }
        };
        if !devices.contains(&d) {
            devices.push(d);
        }
    }
    devices
}

/// Which kind of v1 line matches a device, for the statistics.
const HIT_KINDS: [&str; 5] = ["exact", "M:*", "*:m", "*:*", "none"];

fn hit_kinds(list: &[String], ty: Ty, ma: u32, mi: u32) -> Vec<usize> {
    let mut kinds = Vec::new();
    for line in list {
        let mut f = line.split([' ', ':']);
        let (Some(t), Some(lma), Some(lmi)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let matches = |field: &str, n: u32| field == "*" || field == n.to_string();
        if (t.starts_with(ty.letter()) || t == "a") && matches(lma, ma) && matches(lmi, mi) {
            kinds.push(match (lma, lmi) {
                ("*", "*") => 3,
                ("*", _) => 2,
                (_, "*") => 1,
                _ => 0,
            });
        }
    }
    if kinds.is_empty() {
        kinds.push(4);
    }
    kinds
}

#[derive(Debug, Default)]
struct Stats {
    cases: u64,
    calls: u64,
    v1_writes: u64,
    probes: u64,
    allowed: u64,
    denied: u64,
    checks: u64,
    hits: [u64; 5],
    largest: usize,
}

/// One shard's cgroups that live across cases: a v2 cgroup with no
/// program for the v1 probe, and the node files.
struct Worker {
    v2_mount: PathBuf,
    v1_mount: PathBuf,
    unrestricted: Scratch,
    nodes: NodeCache,
    stats: Stats,
}

impl Worker {
    fn new(v2_mount: &Path, v1_mount: &Path) -> Worker {
        // A new child of the cgroup2 root: restricted by nothing unless the
        // root is.
        let root = Cgroup::open(v2_mount.to_str().unwrap()).and_then(|c| c.attached());
        assert_eq!(
            root.map(|a| a.ids).ok(),
            Some(vec![]),
            "the cgroup2 root must have no device program (the v1 probe sits below it)"
        );
        let unrestricted = Scratch::new(v2_mount);
        let root_list = std::fs::read_to_string(v1_mount.join("devices.list"));
        assert_eq!(
            root_list.as_deref().ok(),
            Some("a *:* rwm\n"),
            "the v1 devices root must allow every device (the v2 probe sits there)"
        );
        Worker {
            v2_mount: v2_mount.to_path_buf(),
            v1_mount: v1_mount.to_path_buf(),
            unrestricted,
            nodes: NodeCache::default(),
            stats: Stats::default(),
        }
    }

    /// Runs the case on fresh cgroups; one line per disagreement.
    fn run(&mut self, case: &Case) -> Vec<String> {
        self.nodes.trim();
        let v1 = V1Cgroup::new(&self.v1_mount);
        let v2 = Scratch::new(&self.v2_mount);
        let path = CString::new(v2.p()).unwrap();
        let reset = match case.start {
            Start::Untouched => {
                assert!(case.calls.is_empty(), "an untouched case makes no call");
                false
            }
            Start::DenyAll => true,
            Start::Fresh => case.calls.is_empty(),
        };
        if case.start != Start::Untouched {
            if let Err(e) = v1.write("devices.deny", "a") {
                return vec![e];
            }
        }
        if reset {
            if let Err(e) = Call::DenyAll.apply_v2(&path) {
                return vec![format!("the reset: {e}")];
            }
        }
        let mut writes = 0;
        for (i, call) in case.calls.iter().enumerate() {
            for (file, line) in call.v1_writes() {
                if let Err(e) = v1.write(file, &line) {
                    return vec![format!("call {i} ({call}): {e}")];
                }
                writes += 1;
            }
            if let Err(e) = call.apply_v2(&path) {
                return vec![format!("call {i}: {e}")];
            }
        }
        let mut out = Vec::new();

        // The lists, as sets of lines.
        let v1_list = match v1.list() {
            Ok(l) => l,
            Err(e) => return vec![e],
        };
        let v2_list: Vec<String> = list(&path).lines().map(str::to_string).collect();
        let (mut a, mut b) = (v1_list.clone(), v2_list.clone());
        a.sort();
        b.sort();
        if a != b {
            out.push(format!(
                "list: v1's devices.list has {v1_list:?}, the library lists {v2_list:?}"
            ));
        }
        self.stats.largest = self.stats.largest.max(v2_list.len());

        // The kernel's answers in each.
        // The same nodes; each probe its own paths to mknod (they run at once).
        let accesses = self.nodes.accesses(&case.devices);
        let args = |accesses: &[Access]| -> Vec<String> {
            accesses.iter().map(|a| a.arg.clone()).collect()
        };
        let probe_v1 = Probe::start(&[&self.unrestricted.path], &v1.path, &args(&accesses));
        let for_v2 = self.nodes.accesses(&case.devices);
        let probe_v2 = Probe::start(&[&self.v1_mount], &v2.path, &args(&for_v2));
        let (in_v1, in_v2) = (probe_v1.results(), probe_v2.results());
        drop(v1);
        // v1's answer to each access the kernel checks.
        let mut answers = HashMap::new();
        for ((a, r1), r2) in accesses.iter().zip(&in_v1).zip(&in_v2) {
            let what = describe(a);
            if r1 != r2 {
                out.push(format!("{what}: v1 gave {r1}, the library's program {r2}"));
            }
            let Some(allowed) = verdict(r1) else {
                out.push(format!(
                    "{what}: the probe got {r1} in v1: not a test of the cgroup"
                ));
                continue;
            };
            self.stats.probes += 1;
            self.stats.allowed += u64::from(allowed);
            self.stats.denied += u64::from(!allowed);
            if !kernel_checks(a.ty, a.major, a.minor, a.kind) {
                if !allowed {
                    out.push(format!(
                        "{what}: v1 gave {r1}, but the kernel does not check it"
                    ));
                }
                continue;
            }
            if a.kind == "f" {
                for kind in hit_kinds(&v1_list, a.ty, a.major, a.minor) {
                    self.stats.hits[kind] += 1;
                }
            }
            answers.insert((a.ty, a.major, a.minor, a.perms), allowed);
        }
        // check: each access v1 answered, as a b or c query, and as an a
        // query (both types) where v1 answered for both. (access(F_OK)
        // asks for no permission, which check does not take.)
        for (&(ty, major, minor, perms), &allowed) in answers.iter().filter(|(k, _)| k.3 != 0) {
            let got = check(&path, ty.letter() as u8, major, minor, perms);
            self.stats.checks += 1;
            if got != Ok(allowed) {
                out.push(format!(
                    "{} {major}:{minor} {}: v1 {}, check says {got:?}",
                    ty.letter(),
                    perms_text(perms),
                    word(allowed)
                ));
            }
            let Some(&block) = answers.get(&(Ty::Block, major, minor, perms)) else {
                continue;
            };
            if ty == Ty::Char {
                let both = allowed && block;
                let got = check(&path, b'a', major, minor, perms);
                self.stats.checks += 1;
                if got != Ok(both) {
                    out.push(format!(
                        "a {major}:{minor} {}: v1 {} (b {}, c {}), check says {got:?}",
                        perms_text(perms),
                        word(both),
                        word(block),
                        word(allowed)
                    ));
                }
            }
        }
        self.stats.cases += 1;
        self.stats.calls += case.calls.len() as u64;
        self.stats.v1_writes += writes;
        out
    }
}

fn word(allowed: bool) -> &'static str {
    if allowed {
        "allows"
    } else {
        "denies"
    }
}

fn describe(a: &Access) -> String {
    let what = match a.kind {
        "f" => "access(F_OK)".to_string(),
        "m" => "mknod".to_string(),
        kind => format!("open {kind}"),
    };
    format!("{what} {} {}:{}", a.ty.letter(), a.major, a.minor)
}

fn check(path: &CStr, ty: u8, major: u32, minor: u32, perms: u8) -> Result<bool, String> {
    // SAFETY: valid C string.
    let ret = unsafe {
        vircgroup_v2_devices_check(
            path.as_ptr(),
            ty as libc::c_char,
            major as i32,
            minor as i32,
            i32::from(perms),
        )
    };
    match ret {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(format!("check failed: {}", last_error())),
    }
}

/// The report of a disagreement, up to the list of disagreements.
fn report(run: &str, case: &Case, shrunk: &Case) -> String {
    let mut s = format!(
        "CGROUP V1 DISAGREEMENT ({run})\n\
         case seed {:#x}; replay: V1_REPLAY={:#x} cargo test --features testing --test v1 -- --nocapture\n\
         start: {:?}; calls (shrunk from {} to {}), each with what v1 was written:\n",
        case.seed,
        case.seed,
        case.start,
        case.calls.len(),
        shrunk.calls.len()
    );
    for call in &shrunk.calls {
        let writes: Vec<String> = call
            .v1_writes()
            .iter()
            .map(|(file, line)| format!("'{line}' > {file}"))
            .collect();
        s += &format!("  {call}   [v1: {}]\n", writes.join(", "));
    }
    s += "disagreements:\n";
    s
}

fn shard(k: u64) {
    let Some((v2_mount, v1_mount)) = mounts() else {
        return;
    };
    let s = Settings::from_env("V1", DEFAULT_CASES, DEFAULT_SEED);
    let seeds = s.shard(k, SHARDS);
    if seeds.is_empty() {
        return;
    }
    let start = Instant::now();
    let mut worker = Worker::new(&v2_mount, &v1_mount);
    let shrink = |case: &Case, fails: &mut dyn FnMut(&Case) -> bool| Case {
        calls: ddmin(&case.calls, |calls| {
            fails(&Case {
                calls: calls.to_vec(),
                ..case.clone()
            })
        }),
        ..case.clone()
    };
    run_seeds(&seeds, Case::new, |c| worker.run(c), shrink, report);
    let st = &worker.stats;
    let hits: Vec<String> = HIT_KINDS
        .iter()
        .zip(st.hits)
        .map(|(kind, n)| format!("{kind} {n}"))
        .collect();
    println!(
        "cgroup v1 shard {k}/{SHARDS}: {} cases ({}), 0 disagreements in {:.1?}: \
         {} calls ({} v1 writes), {} probes in each ({} allowed, {} denied), {} checks, \
         probed devices per matching v1 line: {}; longest list {} lines",
        st.cases,
        s.run_name(),
        start.elapsed(),
        st.calls,
        st.v1_writes,
        st.probes,
        st.allowed,
        st.denied,
        st.checks,
        hits.join(", "),
        st.largest,
    );
    // The generator reaches what it is meant to.
    if s.replay.is_none() && st.cases >= 200 {
        assert!(st.allowed > 0 && st.denied > 0, "{st:?}");
        assert!(
            st.hits.iter().all(|&n| n > 0),
            "a kind of line never hit: {st:?}"
        );
        assert!(
            st.largest > 64,
            "no list past the first map's 64 entries: {st:?}"
        );
    }
}

#[test]
fn v1_shard_0() {
    shard(0);
}

#[test]
fn v1_shard_1() {
    shard(1);
}

#[test]
fn v1_shard_2() {
    shard(2);
}

#[test]
fn v1_shard_3() {
    shard(3);
}

/// What v1 itself does with the text this library refuses in the admin
/// tool and never lists: a line starting with `a` is every device.
#[test]
fn v1_reads_a_lines_as_every_device() {
    let Some((_, v1_mount)) = mounts() else {
        return;
    };
    let v1 = V1Cgroup::new(&v1_mount);
    v1.write("devices.deny", "a").unwrap();
    v1.write("devices.allow", "c 1:3 rw").unwrap();
    v1.write("devices.allow", "b 8:* m").unwrap();
    let mut list = v1.list().unwrap();
    list.sort();
    assert_eq!(list, ["b 8:* m", "c 1:3 rw"]);
    // 'a 7:* m' is not "both types on 7:*": it allows everything.
    v1.write("devices.allow", "a 7:* m").unwrap();
    assert_eq!(v1.list().unwrap(), ["a *:* rwm"]);
    // And 'a *:* r' in devices.deny denies everything.
    v1.write("devices.deny", "a *:* r").unwrap();
    assert_eq!(v1.list().unwrap(), Vec::<String>::new());
    // An allow-all as libvirt's v1 backend writes it lists as two lines.
    v1.write("devices.allow", "b *:* rwm").unwrap();
    v1.write("devices.allow", "c *:* rwm").unwrap();
    assert_eq!(v1.list().unwrap(), ["b *:* rwm", "c *:* rwm"]);
}

/// Nested cgroups in both hierarchies: a parent restricted by calls, a
/// child made after them (v1 copies the parent's rules into a new child;
/// the v2 child is given the same rules through the library), then calls
/// on both, the parent's too. In v2 the parent's program is attached with
/// `BPF_F_ALLOW_MULTI` (as systemd's slices have theirs) so the child can
/// have its own, and the kernel runs both: `list` and `check` on the child
/// answer for both programs, and must equal v1's child.
///
/// v1 keeps the intersection of the two only in some cases: it removes a
/// child's rule whole when no single rule of the parent covers it any
/// more (`revalidate_active_exceptions`), so a rule the parent gives back
/// later does not come back to the child, and it refuses a child's allow
/// that no single parent rule covers. A model of both runs ahead of each
/// call, and a call after which they would differ is not made (counted);
/// `nested_cases_where_v1_differs` shows those cases, where the library
/// answers as the kernel enforces (the probe), not as v1.
///
/// ```sh
/// cargo test --features testing --test v1 nested        # 1,000 cases
/// V1N_CASES=10000 / V1N_SEED=... / V1N_REPLAY=0x... as for the flat cases
/// ```
mod nested {
    use super::*;
    use ::vircgroup_v2_devices::insn::{exit, mov64_imm, reg::R0};
    use ::vircgroup_v2_devices::rules::Rule;
    use ::vircgroup_v2_devices::{api, sys};
    use std::collections::BTreeSet;
    use std::os::fd::AsFd;

    /// One v1 exception (or library rule): type b or c, numbers, perms.
    type Ex = (u8, Option<u32>, Option<u32>, u8);

    fn covers(a: &Ex, b: &Ex) -> bool {
        a.0 == b.0
            && a.1.is_none_or(|m| b.1 == Some(m))
            && a.2.is_none_or(|m| b.2 == Some(m))
            && a.3 & b.3 == b.3
    }

    fn add(set: &mut Vec<Ex>, e: Ex) {
        match set.iter_mut().find(|x| (x.0, x.1, x.2) == (e.0, e.1, e.2)) {
            Some(x) => x.3 |= e.3,
            None => set.push(e),
        }
    }

    /// `dev_exception_rm`: bits off the exception with exactly these numbers.
    fn rm(set: &mut Vec<Ex>, e: Ex) {
        for x in set.iter_mut() {
            if (x.0, x.1, x.2) == (e.0, e.1, e.2) {
                x.3 &= !e.3;
            }
        }
        set.retain(|x| x.3 != 0);
    }

    /// The library's `list` of a child below a parent (`effective.rs`'s
    /// restrict): a child rule kept whole where one parent rule covers
    /// it, else cut to its parts inside the parent's rules.
    fn restrict(own: &[Ex], above: &[Ex]) -> Vec<Ex> {
        let meet = |a: &Ex, b: &Ex| -> Option<Ex> {
            let n = |x: Option<u32>, y: Option<u32>| match (x, y) {
                (Some(x), Some(y)) if x != y => Err(()),
                (Some(x), _) | (_, Some(x)) => Ok(Some(x)),
                _ => Ok(None),
            };
            let p = a.3 & b.3;
            if a.0 != b.0 || p == 0 {
                return None;
            }
            Some((a.0, n(a.1, b.1).ok()?, n(a.2, b.2).ok()?, p))
        };
        let mut out = Vec::new();
        for r in own {
            if above.iter().any(|a| covers(a, r)) {
                out.push(*r);
                continue;
            }
            let parts: Vec<Ex> = above.iter().filter_map(|a| meet(r, a)).collect();
            for (i, p) in parts.iter().enumerate() {
                let inside = parts
                    .iter()
                    .enumerate()
                    .any(|(j, q)| j != i && covers(q, p) && (q != p || j < i));
                if !inside {
                    out.push(*p);
                }
            }
        }
        out
    }

    fn lines(set: &[Ex]) -> BTreeSet<String> {
        set.iter()
            .map(|&(ty, major, minor, perms)| {
                Spec {
                    ty,
                    major,
                    minor,
                    perms,
                }
                .to_string()
            })
            .collect()
    }

    /// Both hierarchies' parent and child, as the kernel would hold them.
    #[derive(Debug, Clone, Default)]
    pub struct Model {
        parent: Vec<Ex>,
        /// v1's child exceptions.
        v1_child: Vec<Ex>,
        /// The library's rules on the v2 child (its own program).
        v2_child: Vec<Ex>,
    }

    /// Who a call is made on.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum On {
        Parent,
        Child,
    }

    impl Model {
        /// v1's lines for one call: (allow?, exception) each; None for `a`.
        fn each(call: &Call) -> Vec<(bool, Option<Ex>)> {
            call.v1_writes()
                .into_iter()
                .map(|(file, line)| {
                    let allow = file == "devices.allow";
                    if line == "a" {
                        return (allow, None);
                    }
                    let r: Rule = line.parse().unwrap();
                    let ty = r.ty.letter() as u8;
                    (allow, Some((ty, r.major, r.minor, r.perms as u8)))
                })
                .collect()
        }

        /// The call on both; Err when v1 refuses it.
        pub fn apply(&mut self, on: On, call: &Call) -> Result<(), String> {
            for (allow, ex) in Self::each(call) {
                match (on, allow, ex) {
                    (On::Parent, _, None) => return Err("'a' on a parent with a child".into()),
                    (On::Parent, true, Some(e)) => add(&mut self.parent, e),
                    (On::Parent, false, Some(e)) => {
                        rm(&mut self.parent, e);
                        // v1 takes the bits from the child's same
                        // exception, then drops every child exception no
                        // single parent exception covers; the library's
                        // child program is left as it is.
                        rm(&mut self.v1_child, e);
                        let parent = self.parent.clone();
                        self.v1_child
                            .retain(|c| parent.iter().any(|p| covers(p, c)));
                    }
                    (On::Child, _, None) => {
                        self.v1_child.clear();
                        self.v2_child.clear();
                    }
                    (On::Child, true, Some(e)) => {
                        if !self.parent.iter().any(|p| covers(p, &e)) {
                            return Err(format!("v1 refuses the child's allow of {e:?}"));
                        }
                        add(&mut self.v1_child, e);
                        add(&mut self.v2_child, e);
                    }
                    (On::Child, false, Some(e)) => {
                        rm(&mut self.v1_child, e);
                        rm(&mut self.v2_child, e);
                    }
                }
            }
            Ok(())
        }

        /// v1's child list and the library's, as line sets.
        pub fn lists(&self) -> (BTreeSet<String>, BTreeSet<String>) {
            (
                lines(&self.v1_child),
                lines(&restrict(&self.v2_child, &self.parent)),
            )
        }
    }

    #[derive(Debug, Clone)]
    pub struct NCase {
        pub seed: u64,
        /// Calls on the parent before the child is made.
        pub before: Vec<Call>,
        /// Calls on either after.
        pub after: Vec<(On, Call)>,
        pub devices: Vec<(u32, u32)>,
        /// Calls the model left out (v1 would not keep the intersection).
        pub skipped: usize,
    }

    impl NCase {
        pub fn new(seed: u64) -> NCase {
            let mut rng = Rng(seed);
            let hot = Hot::new(&mut rng, false);
            let mut specs = Vec::new();
            let mut model = Model::default();
            let mut before = Vec::new();
            for _ in 0..rng.range(1, 10) {
                let call = match rng.below(100) {
                    0..=4 => Call::AllowAll(rng.range(1, 7) as u8),
                    5..=74 => Call::Allow(hot.spec(&mut rng)),
                    _ => Call::Deny(hot.deny_spec(&mut rng, &specs)),
                };
                if let Call::Allow(s) | Call::Deny(s) = call {
                    specs.push(s);
                }
                model.apply(On::Parent, &call).unwrap();
                before.push(call);
            }
            model.v1_child = model.parent.clone();
            model.v2_child = model.parent.clone();
            let mut after = Vec::new();
            let mut skipped = 0;
            for _ in 0..rng.range(1, 16) {
                let on = if rng.percent(45) {
                    On::Parent
                } else {
                    On::Child
                };
                let call = match rng.below(100) {
                    0..=2 if on == On::Child => Call::DenyAll,
                    3..=7 => Call::AllowAll(rng.range(1, 7) as u8),
                    8..=59 => {
                        // A child's allow mostly inside a parent's rule.
                        let mut s = hot.spec(&mut rng);
                        if on == On::Child && !model.parent.is_empty() && rng.percent(70) {
                            let p = rng.pick(&model.parent);
                            s.ty = p.0;
                            if p.1.is_some() || rng.percent(50) {
                                s.major = p.1;
                            }
                            if p.2.is_some() || rng.percent(50) {
                                s.minor = p.2;
                            }
                            let sub = p.3 & s.perms;
                            s.perms = if sub != 0 {
                                sub
                            } else {
                                p.3 & p.3.wrapping_neg()
                            };
                        }
                        Call::Allow(s)
                    }
                    _ => Call::Deny(hot.deny_spec(&mut rng, &specs)),
                };
                if let Call::Allow(s) | Call::Deny(s) = call {
                    specs.push(s);
                }
                let mut next = model.clone();
                let ok = next.apply(on, &call).is_ok() && {
                    let (v1, lib) = next.lists();
                    v1 == lib
                };
                if ok {
                    model = next;
                    after.push((on, call));
                } else {
                    skipped += 1;
                }
            }
            let devices = devices_for(&mut rng, &specs, &hot);
            NCase {
                seed,
                before,
                after,
                devices,
                skipped,
            }
        }
    }

    /// The v2 parent and child; the child removed first on drop.
    pub struct V2Pair {
        pub parent: Scratch,
        pub child: PathBuf,
    }

    impl Drop for V2Pair {
        fn drop(&mut self) {
            let _ = api::remove_prog(self.child.to_str().unwrap());
            remove_cgroup(&self.child);
        }
    }

    /// Restricts the v2 parent with its program attached ALLOW_MULTI: an
    /// allow-all placeholder attached that way first makes the library
    /// attach beside it; the placeholder is detached after.
    pub fn multi_parent(mount: &Path) -> Result<V2Pair, String> {
        let parent = Scratch::new(mount);
        let p = sys::prog_load(
            sys::BPF_PROG_TYPE_CGROUP_DEVICE,
            &[mov64_imm(R0, 1), exit()],
            "GPL",
            "placeholder",
        )
        .map_err(|e| e.to_string())?;
        common::attach_raw(&parent.path, &p, sys::BPF_F_ALLOW_MULTI);
        api::deny_all(parent.p()).map_err(|e| e.to_string())?;
        let cg = std::fs::File::open(&parent.path).unwrap();
        sys::prog_detach(cg.as_fd(), p.as_fd(), sys::BPF_CGROUP_DEVICE)
            .map_err(|e| e.to_string())?;
        let child = parent.path.join("child");
        std::fs::create_dir(&child).map_err(|e| e.to_string())?;
        Ok(V2Pair { parent, child })
    }

    /// The library's list of a cgroup, as lines.
    fn lib_list(path: &Path) -> BTreeSet<String> {
        let c = CString::new(path.to_str().unwrap()).unwrap();
        list(&c).lines().map(str::to_string).collect()
    }

    /// Runs a case; one line per disagreement.
    pub fn run(
        v2_mount: &Path,
        v1_mount: &Path,
        unrestricted: &Scratch,
        nodes: &mut NodeCache,
        case: &NCase,
        probes: &mut u64,
    ) -> Vec<String> {
        let v1p = V1Cgroup::new(v1_mount);
        let pair = match multi_parent(v2_mount) {
            Ok(p) => p,
            Err(e) => return vec![format!("setting up the v2 parent: {e}")],
        };
        let pp = CString::new(pair.parent.p()).unwrap();
        let cp = CString::new(pair.child.to_str().unwrap()).unwrap();
        if let Err(e) = v1p.write("devices.deny", "a") {
            return vec![e];
        }
        for call in &case.before {
            for (file, line) in call.v1_writes() {
                if let Err(e) = v1p.write(file, &line) {
                    return vec![format!("parent {call}: {e}")];
                }
            }
            if let Err(e) = call.apply_v2(&pp) {
                return vec![format!("parent: {e}")];
            }
        }
        // The children, made now: v1 copies the parent's rules, the v2
        // child is given them.
        let v1c = V1Cgroup {
            path: v1p.path.join("child"),
        };
        if let Err(e) = std::fs::create_dir(&v1c.path) {
            return vec![format!("mkdir the v1 child: {e}")];
        }
        let inherited = match v1c.list() {
            Ok(l) => l,
            Err(e) => return vec![e],
        };
        if let Err(e) = Call::DenyAll.apply_v2(&cp) {
            return vec![format!("child: {e}")];
        }
        for line in &inherited {
            let r: Rule = line.parse().unwrap();
            let n = |n: Option<u32>| n.map_or(-1, |n| n as i32);
            // SAFETY: valid C string.
            let ret = unsafe {
                vircgroup_v2_allow_device(
                    cp.as_ptr(),
                    r.ty.letter() as libc::c_char,
                    n(r.major),
                    n(r.minor),
                    r.perms,
                )
            };
            if ret != 0 {
                return vec![format!("child: allow {line}: {}", last_error())];
            }
        }
        for (on, call) in &case.after {
            let (v1, v2) = match on {
                On::Parent => (&v1p, &pp),
                On::Child => (&v1c, &cp),
            };
            for (file, line) in call.v1_writes() {
                if let Err(e) = v1.write(file, &line) {
                    return vec![format!("{on:?} {call}: {e}")];
                }
            }
            if let Err(e) = call.apply_v2(v2) {
                return vec![format!("{on:?}: {e}")];
            }
        }
        let mut out = Vec::new();
        for (what, v1, v2) in [
            ("parent", &v1p, pair.parent.path.as_path()),
            ("child", &v1c, pair.child.as_path()),
        ] {
            let v1_list: BTreeSet<String> = match v1.list() {
                Ok(l) => l.into_iter().collect(),
                Err(e) => return vec![e],
            };
            let got = lib_list(v2);
            if v1_list != got {
                out.push(format!(
                    "{what}'s list: v1 {v1_list:?}, the library {got:?}"
                ));
            }
        }
        let accesses = nodes.accesses(&case.devices);
        let for_v2 = nodes.accesses(&case.devices);
        let args = |a: &[Access]| -> Vec<String> { a.iter().map(|a| a.arg.clone()).collect() };
        let in_v1 = Probe::start(&[&unrestricted.path], &v1c.path, &args(&accesses));
        let in_v2 = Probe::start(&[v1_mount], &pair.child, &args(&for_v2));
        let (in_v1, in_v2) = (in_v1.results(), in_v2.results());
        drop(v1c);
        drop(v1p);
        for ((a, r1), r2) in accesses.iter().zip(&in_v1).zip(&in_v2) {
            let what = describe(a);
            // access(F_OK) asks for no permission: each v2 program lets it
            // through when one of its rules names the device, so the two
            // programs may both let it through with no permission in
            // common, where v1's one list has no line for it. Not a
            // permission: compared in neither direction.
            if a.kind == "f" {
                continue;
            }
            if r1 != r2 {
                out.push(format!("{what}: v1's child gave {r1}, the v2 child {r2}"));
            }
            let Some(allowed) = verdict(r1) else {
                out.push(format!("{what}: the probe got {r1} in v1"));
                continue;
            };
            *probes += 1;
            if a.perms != 0 && kernel_checks(a.ty, a.major, a.minor, a.kind) {
                let got = check(&cp, a.ty.letter() as u8, a.major, a.minor, a.perms);
                if got != Ok(allowed) {
                    out.push(format!("{what}: v1 {}, check says {got:?}", word(allowed)));
                }
            }
        }
        out
    }
}

fn nested_shard(k: u64) {
    let Some((v2_mount, v1_mount)) = mounts() else {
        return;
    };
    let s = Settings::from_env("V1N", DEFAULT_CASES, DEFAULT_SEED ^ 0x11);
    let seeds = s.shard(k, SHARDS);
    if seeds.is_empty() {
        return;
    }
    let start = Instant::now();
    let unrestricted = Scratch::new(&v2_mount);
    let mut nodes = NodeCache::default();
    let (mut cases, mut calls, mut skipped, mut probes) = (0u64, 0u64, 0u64, 0u64);
    let report = |run: &str, case: &nested::NCase, _: &nested::NCase| {
        format!(
            "NESTED CGROUP V1 DISAGREEMENT ({run})\n{case:#?}\nreplay: V1N_REPLAY={:#x} \
             cargo test --features testing --test v1 nested -- --nocapture\ndisagreements:\n",
            case.seed
        )
    };
    run_seeds(
        &seeds,
        nested::NCase::new,
        |c| {
            nodes.trim();
            cases += 1;
            calls += (c.before.len() + c.after.len()) as u64;
            skipped += c.skipped as u64;
            nested::run(
                &v2_mount,
                &v1_mount,
                &unrestricted,
                &mut nodes,
                c,
                &mut probes,
            )
        },
        |c, _| c.clone(),
        report,
    );
    println!(
        "nested cgroup v1 shard {k}/{SHARDS}: {cases} cases ({}), 0 disagreements in {:.1?}: \
         {calls} calls on parents and children, {skipped} calls left out (v1 would not keep \
         the intersection), {probes} probes in each child",
        s.run_name(),
        start.elapsed()
    );
}

#[test]
fn v1_nested_shard_0() {
    nested_shard(0);
}

#[test]
fn v1_nested_shard_1() {
    nested_shard(1);
}

#[test]
fn v1_nested_shard_2() {
    nested_shard(2);
}

#[test]
fn v1_nested_shard_3() {
    nested_shard(3);
}

/// The cases where cgroup v1 does not keep the intersection of the parent's
/// and the child's rules, and what the library says there: what the
/// kernel enforces in cgroup v2 (the probe in the v2 child), not v1.
#[test]
fn nested_cases_where_v1_differs() {
    let Some((v2_mount, v1_mount)) = mounts() else {
        return;
    };
    let major = common::cases::major_pool()[2];
    let nodes = common::Nodes::new();
    let m1 = nodes.node("m1", 'c', major.into(), 1);
    let unrestricted = Scratch::new(&v2_mount);
    let c = |t: &str| t.replace('M', &major.to_string());
    struct Scenario<'a> {
        /// Allowed on the parent before the child is made.
        before: &'a [&'a str],
        /// (on the parent?, file, line) after; the library makes the same call.
        after: &'a [(bool, &'a str, &'a str)],
        /// Whether v1 refuses the last write (EPERM).
        v1_refuses_last: bool,
        v1_list: &'a [&'a str],
        lib_list: &'a [&'a str],
        /// Probed on c M:1.
        access: &'a str,
        v1_allows: bool,
        v2_allows: bool,
    }
    let scenarios = [
        // The parent's rule shrinks below a child's narrower rule: v1
        // drops the child's rule whole; the kernel still allows what both
        // programs allow (read).
        Scenario {
            before: &["c M:* rw"],
            after: &[
                (false, "devices.deny", "c M:* rw"),
                (false, "devices.allow", "c M:1 rw"),
                (true, "devices.deny", "c M:* w"),
            ],
            v1_refuses_last: false,
            v1_list: &[],
            lib_list: &["c M:1 r"],
            access: "r",
            v1_allows: false,
            v2_allows: true,
        },
        // A permission the parent takes away and gives back: v1's child
        // lost it for good; the child's own program never did.
        Scenario {
            before: &["c M:1 rw"],
            after: &[
                (true, "devices.deny", "c M:1 w"),
                (true, "devices.allow", "c M:1 w"),
            ],
            v1_refuses_last: false,
            v1_list: &["c M:1 r"],
            lib_list: &["c M:1 rw"],
            access: "w",
            v1_allows: false,
            v2_allows: true,
        },
        // A child's allow beyond the parent: v1 refuses it (EPERM); the
        // library takes it into the child's program, where it allows
        // nothing beyond the parent.
        Scenario {
            before: &["c M:* r"],
            after: &[(false, "devices.allow", "c M:1 rw")],
            v1_refuses_last: true,
            v1_list: &["c M:* r"],
            lib_list: &["c M:* r", "c M:1 r"],
            access: "w",
            v1_allows: false,
            v2_allows: false,
        },
    ];
    for sc in scenarios {
        let v1p = V1Cgroup::new(&v1_mount);
        let pair = nested::multi_parent(&v2_mount).unwrap();
        let pp = CString::new(pair.parent.p()).unwrap();
        let cp = CString::new(pair.child.to_str().unwrap()).unwrap();
        v1p.write("devices.deny", "a").unwrap();
        let call = |allow: bool, line: &str| {
            let r: ::vircgroup_v2_devices::rules::Rule = line.parse().unwrap();
            let spec = Spec {
                ty: r.ty.letter() as u8,
                major: r.major,
                minor: r.minor,
                perms: r.perms as u8,
            };
            if allow {
                Call::Allow(spec)
            } else {
                Call::Deny(spec)
            }
        };
        for line in sc.before {
            v1p.write("devices.allow", &c(line)).unwrap();
            call(true, &c(line)).apply_v2(&pp).unwrap();
        }
        let v1c = V1Cgroup {
            path: v1p.path.join("child"),
        };
        std::fs::create_dir(&v1c.path).unwrap();
        Call::DenyAll.apply_v2(&cp).unwrap();
        for line in v1c.list().unwrap() {
            call(true, &line).apply_v2(&cp).unwrap();
        }
        for (i, &(on_parent, file, line)) in sc.after.iter().enumerate() {
            let (v1, v2) = if on_parent { (&v1p, &pp) } else { (&v1c, &cp) };
            let refused = v1.write(file, &c(line)).is_err();
            let last = i + 1 == sc.after.len();
            assert_eq!(refused, last && sc.v1_refuses_last, "v1 on {file} {line}");
            call(file == "devices.allow", &c(line))
                .apply_v2(v2)
                .unwrap();
        }
        let sorted = |l: &[&str]| -> Vec<String> {
            let mut v: Vec<String> = l.iter().map(|s| c(s)).collect();
            v.sort();
            v
        };
        let mut got_v1 = v1c.list().unwrap();
        got_v1.sort();
        assert_eq!(got_v1, sorted(sc.v1_list), "v1's child list");
        let mut got = list(&cp).lines().map(str::to_string).collect::<Vec<_>>();
        got.sort();
        assert_eq!(got, sorted(sc.lib_list), "the library's child list");
        let arg = format!("{}:{m1}", sc.access);
        let in_v1 =
            Probe::start(&[&unrestricted.path], &v1c.path, std::slice::from_ref(&arg)).results();
        let in_v2 = Probe::start(&[&v1_mount], &pair.child, &[arg]).results();
        assert_eq!(verdict(&in_v1[0]), Some(sc.v1_allows), "v1: {in_v1:?}");
        assert_eq!(verdict(&in_v2[0]), Some(sc.v2_allows), "v2: {in_v2:?}");
        let perms = if sc.access == "r" { 1 } else { 2 };
        assert_eq!(check(&cp, b'c', major, 1, perms), Ok(sc.v2_allows), "check");
        drop(v1c);
    }
}
