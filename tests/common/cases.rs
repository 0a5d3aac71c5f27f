// SPDX-License-Identifier: LGPL-2.1-or-later
//! What the seeded differential tests share (tests/oracle.rs against a
//! model and the interpreter, tests/v1.rs against cgroup v1): rules as the
//! C API takes them, a reproducible RNG, device numbers without a driver,
//! the probe's accesses and what the kernel checks of them, the run's
//! settings from the environment, and the shrinker.

use super::Nodes;
use std::collections::HashSet;
use std::path::Path;
use std::sync::OnceLock;

/// `VIRCGROUP_DEVICE_READ`, `_WRITE`, `_MKNOD`.
pub const R: u8 = 1;
pub const W: u8 = 2;
pub const M: u8 = 4;

pub const MAX_MAJOR: u32 = 4095;
pub const MAX_MINOR: u32 = 1_048_575;

/// The type of a device (a rule of type `a` is one of each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Ty {
    Block,
    Char,
}

impl Ty {
    pub fn letter(self) -> char {
        match self {
            Ty::Block => 'b',
            Ty::Char => 'c',
        }
    }
}

/// The device types a rule of type `letter` (`a`, `b` or `c`) stands for.
pub fn types(letter: u8) -> &'static [Ty] {
    match letter {
        b'a' => &[Ty::Block, Ty::Char],
        b'b' => &[Ty::Block],
        b'c' => &[Ty::Char],
        _ => panic!("type {letter}"),
    }
}

/// A rule as the C API takes it: type `a`, `b` or `c`, numbers (None is
/// `*`, the C API's -1) and `VIRCGROUP_DEVICE_*` permissions. Shown as
/// cgroup v1 text (`c 1:3 rw`), which is also what `devices.allow` reads
/// for a `b` or `c` rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    pub ty: u8,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub perms: u8,
}

impl std::fmt::Display for Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}:{} {}",
            self.ty as char,
            num(self.major),
            num(self.minor),
            perms_text(self.perms)
        )
    }
}

impl Spec {
    /// The library's rule.
    pub fn rule(&self) -> vircgroup_v2_devices::rules::Rule {
        let n = |n: Option<u32>| n.map_or(-1, |n| n as i32);
        super::rule(self.ty, n(self.major), n(self.minor), i32::from(self.perms))
    }
}

pub fn num(n: Option<u32>) -> String {
    n.map_or("*".to_string(), |n| n.to_string())
}

/// `rwm` text, in that order (as the kernel and libvirt write it).
pub fn perms_text(perms: u8) -> String {
    [(R, 'r'), (W, 'w'), (M, 'm')]
        .iter()
        .filter(|(bit, _)| perms & bit != 0)
        .map(|(_, c)| c)
        .collect()
}

/// splitmix64: seeded, reproducible, no dependency.
#[derive(Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// In `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    pub fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }

    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}

/// The seed of case `i` of a run seeded `seed`.
pub fn case_seed(seed: u64, i: u64) -> u64 {
    Rng(seed ^ i.wrapping_mul(0xd134_2543_de82_ef95)).next()
}

/// Majors no driver on this machine answers to (an open reaches the
/// cgroup check and then fails with ENXIO): `/proc/devices` lists the ones
/// in use, of either type.
pub fn in_use() -> &'static HashSet<u32> {
    static USED: OnceLock<HashSet<u32>> = OnceLock::new();
    USED.get_or_init(|| {
        std::fs::read_to_string("/proc/devices")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().next()?.parse().ok())
            .collect()
    })
}

/// Majors the cases use most: 0 and 4095, and a few without a driver.
pub fn major_pool() -> &'static [u32] {
    static POOL: OnceLock<Vec<u32>> = OnceLock::new();
    POOL.get_or_init(|| {
        let pool: Vec<u32> = [0, 4095, 240, 241, 243, 600, 1024, 3000, 3071, 4094]
            .into_iter()
            .filter(|m| *m == 0 || !in_use().contains(m))
            .collect();
        assert!(pool.len() >= 5, "majors in use: {:?}", in_use());
        pool
    })
}

/// A driverless major above the dynamic ranges.
pub fn random_major(rng: &mut Rng) -> u32 {
    loop {
        let m = rng.range(512, MAX_MAJOR as u64) as u32;
        if !in_use().contains(&m) {
            return m;
        }
    }
}

/// Minors at the edges of the encodings (dev_t's 8-bit split, 16 bits,
/// the 20-bit maximum), or any.
pub fn random_minor(rng: &mut Rng) -> u32 {
    const EDGES: [u32; 11] = [0, 1, 2, 3, 7, 255, 256, 65535, 65536, 1_048_574, MAX_MINOR];
    if rng.percent(70) {
        rng.pick(&EDGES)
    } else {
        rng.range(0, MAX_MINOR as u64) as u32
    }
}

/// The numbers a case draws its rules from: 1-3 majors (mostly from the
/// pool), 1-4 minors (mostly at the edges); in a `wide` case most minors
/// are any, so that the rules outgrow a map.
pub struct Hot {
    pub majors: Vec<u32>,
    pub minors: Vec<u32>,
    pub wide: bool,
}

impl Hot {
    pub fn new(rng: &mut Rng, wide: bool) -> Hot {
        let majors = (0..rng.range(1, 3))
            .map(|_| {
                if rng.percent(20) {
                    random_major(rng)
                } else {
                    rng.pick(major_pool())
                }
            })
            .collect();
        let minors = (0..rng.range(1, 4)).map(|_| random_minor(rng)).collect();
        Hot {
            majors,
            minors,
            wide,
        }
    }

    /// A rule: `a` a quarter of the time, else `b` or `c`; each number a
    /// wildcard a fifth of the time; any permissions.
    pub fn spec(&self, rng: &mut Rng) -> Spec {
        Spec {
            ty: match rng.below(100) {
                0..=24 => b'a',
                25..=59 => b'b',
                _ => b'c',
            },
            major: (!rng.percent(20)).then(|| rng.pick(&self.majors)),
            minor: (!rng.percent(20)).then(|| {
                if self.wide && rng.percent(70) {
                    rng.range(0, MAX_MINOR as u64) as u32
                } else {
                    rng.pick(&self.minors)
                }
            }),
            perms: rng.range(1, 7) as u8,
        }
    }

    /// A rule to deny: mostly on the numbers of one of `earlier` (one that
    /// is, or was, there), half of those of its type too.
    pub fn deny_spec(&self, rng: &mut Rng, earlier: &[Spec]) -> Spec {
        let mut s = self.spec(rng);
        if !earlier.is_empty() && rng.percent(65) {
            let prev = rng.pick(earlier);
            (s.major, s.minor) = (prev.major, prev.minor);
            if rng.percent(50) {
                s.ty = prev.ty;
            }
        }
        s
    }
}

/// The accesses the probe makes for each device and type, with the
/// permissions each asks for (0: access(F_OK)).
pub const KINDS: [(&str, u8); 5] = [("r", R), ("w", W), ("rw", R | W), ("f", 0), ("m", M)];

/// Whether the kernel checks this access against the cgroup (v1's
/// controller and v2's programs alike; `devcgroup_check_permission` does
/// both): a device numbered 0:0 has `i_rdev == 0`, which
/// `devcgroup_inode_permission` lets through (opening a char node,
/// access(F_OK) on either type; opening a block node is checked again by
/// `bdev_permission` on kernels that have it, such as 6.1, not on 5.10:
/// [`block_zero_checked`] asks this kernel), and a char 0:0 mknod is a
/// whiteout.
pub fn kernel_checks(ty: Ty, ma: u32, mi: u32, kind: &str) -> bool {
    (ma, mi) != (0, 0)
        || (ty == Ty::Block && (kind == "m" || (kind != "f" && block_zero_checked())))
}

/// Whether this kernel checks opening a block node numbered 0:0 against
/// the cgroup: asked once, by opening one in a cgroup that denies every
/// device.
pub fn block_zero_checked() -> bool {
    static CHECKED: OnceLock<bool> = OnceLock::new();
    *CHECKED.get_or_init(|| {
        let mount = vircgroup_v2_devices::cgroup::cgroup2_mount().expect("a cgroup2 mount");
        let cg = super::Scratch::new(&mount);
        vircgroup_v2_devices::api::deny_all(cg.p()).expect("deny_all");
        let nodes = Nodes::new();
        let node = nodes.node("b0_0", 'b', 0, 0);
        let got = cg.probe(&[format!("r:{node}")]);
        got.first().map(String::as_str) == Some("EPERM")
    })
}

/// What a probe's result says: Some(false) for the cgroup's denial
/// (EPERM), Some(true) for an access that got past the cgroup (done, or a
/// node without a driver: ENXIO, ENODEV), None for anything else (the
/// probe did not test what it meant to).
pub fn verdict(result: &str) -> Option<bool> {
    match result {
        "EPERM" => Some(false),
        "ok" | "ENXIO" | "ENODEV" => Some(true),
        _ => None,
    }
}

/// One access of a probe.
#[derive(Debug, Clone)]
pub struct Access {
    pub ty: Ty,
    pub major: u32,
    pub minor: u32,
    /// One of [`KINDS`].
    pub kind: &'static str,
    pub perms: u8,
    /// As vcg2-probe takes it.
    pub arg: String,
}

/// Device nodes made once each in a temporary directory, and fresh paths
/// for mknod.
pub struct NodeCache {
    nodes: Nodes,
    made: HashSet<(Ty, u32, u32)>,
    fresh: u64,
}

impl Default for NodeCache {
    fn default() -> Self {
        NodeCache {
            nodes: Nodes::new(),
            made: HashSet::new(),
            fresh: 0,
        }
    }
}

impl NodeCache {
    /// The node file for a device, made once.
    pub fn node(&mut self, ty: Ty, ma: u32, mi: u32) -> String {
        let name = format!("{}-{ma}-{mi}", ty.letter());
        if self.made.insert((ty, ma, mi)) {
            self.nodes.node(&name, ty.letter(), ma.into(), mi.into())
        } else {
            self.nodes.dir.join(name).to_str().unwrap().to_string()
        }
    }

    /// Starts a new directory once this one holds many nodes (between
    /// cases only: a probe list must not name a removed node).
    pub fn trim(&mut self) {
        if self.made.len() > 20_000 {
            *self = NodeCache::default();
        }
    }

    /// Every access of [`KINDS`] to each device, block and char.
    pub fn accesses(&mut self, devices: &[(u32, u32)]) -> Vec<Access> {
        let mut out = Vec::with_capacity(devices.len() * 2 * KINDS.len());
        for &(major, minor) in devices {
            for ty in [Ty::Block, Ty::Char] {
                for (kind, perms) in KINDS {
                    let arg = if kind == "m" {
                        self.fresh += 1;
                        let path = self.nodes.fresh(&format!("mknod-{}", self.fresh));
                        format!("mknod:{}:{major}:{minor}:{path}", ty.letter())
                    } else {
                        format!("{kind}:{}", self.node(ty, major, minor))
                    };
                    out.push(Access {
                        ty,
                        major,
                        minor,
                        kind,
                        perms,
                        arg,
                    });
                }
            }
        }
        out
    }
}

/// A run's settings: `{PREFIX}_CASES` cases (default `cases`),
/// `{PREFIX}_SEED` (a number, or `random`; default `seed`), or
/// `{PREFIX}_REPLAY`, one case by the seed a failure printed.
pub struct Settings {
    pub cases: u64,
    pub seed: u64,
    pub replay: Option<u64>,
}

impl Settings {
    pub fn from_env(prefix: &str, cases: u64, seed: u64) -> Settings {
        let number = |name: &str| -> Option<u64> {
            let v = std::env::var(name).ok()?;
            let v = v.trim();
            let parsed = match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => v.parse(),
            };
            Some(parsed.unwrap_or_else(|_| panic!("{name}={v}: not a number")))
        };
        let seed_var = format!("{prefix}_SEED");
        let seed = match std::env::var(&seed_var).as_deref() {
            // One random seed per process, whichever shard asks first.
            Ok("random") => {
                static RANDOM: OnceLock<u64> = OnceLock::new();
                *RANDOM.get_or_init(|| {
                    let t = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap();
                    Rng(t.as_nanos() as u64 ^ u64::from(std::process::id())).next()
                })
            }
            _ => number(&seed_var).unwrap_or(seed),
        };
        Settings {
            cases: number(&format!("{prefix}_CASES")).unwrap_or(cases),
            seed,
            replay: number(&format!("{prefix}_REPLAY")),
        }
    }

    /// What the run is, for its summary: its seed, or the one case replayed.
    pub fn run_name(&self) -> String {
        match self.replay {
            Some(seed) => format!("replay of case seed {seed:#x}"),
            None => format!("seed {:#x}", self.seed),
        }
    }

    /// (what to call it in a report, case seed) of shard `k` of `shards`:
    /// cases `k`, `k + shards`, ...; a replay is shard 0's only case.
    pub fn shard(&self, k: u64, shards: u64) -> Vec<(String, u64)> {
        match self.replay {
            Some(seed) if k == 0 => vec![("replay".to_string(), seed)],
            Some(_) => Vec::new(),
            None => (k..self.cases)
                .step_by(shards as usize)
                .map(|i| {
                    (
                        format!("seed {:#x}, case {i}", self.seed),
                        case_seed(self.seed, i),
                    )
                })
                .collect(),
        }
    }
}

/// Drops items while `fails` still holds: halves of the list, then
/// quarters, down to single items, until none can go.
pub fn ddmin<T: Clone>(items: &[T], mut fails: impl FnMut(&[T]) -> bool) -> Vec<T> {
    let mut best = items.to_vec();
    let mut chunk = (best.len() / 2).max(1);
    while !best.is_empty() {
        let mut progress = false;
        let mut i = 0;
        while i < best.len() {
            let mut trial = best.clone();
            trial.drain(i..(i + chunk).min(best.len()));
            if fails(&trial) {
                best = trial;
                progress = true;
            } else {
                i += chunk;
            }
        }
        if !progress {
            if chunk == 1 {
                break;
            }
            chunk /= 2;
        }
    }
    best
}

/// Runs the cases of `seeds` (each made by `new` from its seed) with
/// `run`, which returns one line per disagreement. The first case that
/// disagrees is shrunk (`shrink` gets a test: does this case still
/// disagree?) and run again, and the test panics with `report(what, case,
/// shrunk)` followed by the disagreements (at most 24); the report of the
/// case itself, "not reproduced", when it passed the second time.
pub fn run_seeds<C: Clone>(
    seeds: &[(String, u64)],
    new: impl Fn(u64) -> C,
    mut run: impl FnMut(&C) -> Vec<String>,
    shrink: impl Fn(&C, &mut dyn FnMut(&C) -> bool) -> C,
    report: impl Fn(&str, &C, &C) -> String,
) {
    for (what, seed) in seeds {
        let case = new(*seed);
        let first = run(&case);
        if first.is_empty() {
            continue;
        }
        let shrunk = shrink(&case, &mut |c| !run(c).is_empty());
        let again = run(&shrunk);
        if again.is_empty() {
            panic!(
                "{}{}(not reproduced: the case passed when run again)",
                report(what, &case, &case),
                listed(&first)
            );
        }
        panic!("{}{}", report(what, &case, &shrunk), listed(&again));
    }
}

/// Disagreements as a report lists them: indented, at most 24.
pub fn listed(found: &[String]) -> String {
    const SHOWN: usize = 24;
    let mut s: String = found
        .iter()
        .take(SHOWN)
        .map(|l| format!("  {l}\n"))
        .collect();
    if found.len() > SHOWN {
        s += &format!("  ... and {} more\n", found.len() - SHOWN);
    }
    s
}

/// Runs vcg2-probe in `cgroup` after joining each of `joins` (cgroups of
/// other hierarchies): one result per access. Fails the test if the probe
/// fails or takes more than 60 s (it is killed then).
pub fn probe_in(joins: &[&Path], cgroup: &Path, accesses: &[String]) -> Vec<String> {
    Probe::start(joins, cgroup, accesses).results()
}

/// A vcg2-probe running in the background, so that probes in several
/// cgroups overlap (a move into a cgroup waits for the kernel's RCU: most
/// of a probe's time).
pub struct Probe {
    cgroup: std::path::PathBuf,
    pid: i32,
    expected: usize,
    waiter: std::thread::JoinHandle<()>,
    done: std::sync::mpsc::Receiver<std::io::Result<std::process::Output>>,
}

impl Probe {
    pub fn start(joins: &[&Path], cgroup: &Path, accesses: &[String]) -> Probe {
        use std::process::{Command, Stdio};
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vcg2-probe"));
        for dir in joins {
            cmd.arg("--join").arg(dir);
        }
        let child = cmd
            .arg(cgroup)
            .args(accesses)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run vcg2-probe");
        let pid = child.id() as i32;
        let (tx, done) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        Probe {
            cgroup: cgroup.to_path_buf(),
            pid,
            expected: accesses.len(),
            waiter,
            done,
        }
    }

    /// One result per access, waiting at most 60 s from the start.
    pub fn results(self) -> Vec<String> {
        let out = match self.done.recv_timeout(std::time::Duration::from_secs(60)) {
            Ok(out) => out.expect("wait for vcg2-probe"),
            Err(_) => {
                // Not reaped yet (the waiter still waits), so the pid is the probe's.
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(self.pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
                let _ = self.waiter.join();
                panic!(
                    "vcg2-probe in {} did not end within 60 s",
                    self.cgroup.display()
                );
            }
        };
        let _ = self.waiter.join();
        assert!(
            out.status.success(),
            "vcg2-probe failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let results: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        assert_eq!(results.len(), self.expected, "one result per access");
        results
    }
}
