// SPDX-License-Identifier: LGPL-2.1-or-later
//! The policy proved three ways, on seeded random rule sequences:
//!
//! - a reference model written from the semantics in docs/API.md (rules to a
//!   decision), which knows nothing of the map encoding;
//! - the exact instructions the library loaded, run by the userspace
//!   interpreter (`program::interp`) on the maps read back from the kernel
//!   (`vircgroup_v2_devices::testing::snapshot`);
//! - the kernel: the program attached to a scratch cgroup and a probe child
//!   in it opening device nodes, calling access(F_OK) and mknod (EPERM is a
//!   denial, anything else got past the cgroup);
//!
//! and `api::check`, `api::list` and the rule count must answer
//! like them. A case starts from a cgroup reset by deny-all, a new one, or
//! one set up by libvirt's C code (its program and map, which the library
//! adopts), then makes a random sequence of allow, deny and deny-all calls
//! (every kind of wildcard, `a`, `b` and `c` on the same numbers, device
//! 0:0, major 4095, minor 1048575; sometimes by node path, sometimes with
//! the library forgetting the cgroup, which it then adopts from the kernel,
//! or detaching; sometimes 70-300 calls so the map grows past 64 and 128)
//! applied through the library, then every access (no bit, `r`, `w`, `m`
//! and their combinations) to devices drawn to hit and miss those rules,
//! block and char alike.
//!
//! ```sh
//! cargo test --test oracle                       # 1,000 cases, fixed seed
//! ORACLE_CASES=10000 cargo test --test oracle    # N cases
//! ORACLE_SEED=0x1234 cargo test --test oracle    # another seed; `random` picks one
//! ORACLE_REPLAY=0x... cargo test --test oracle   # one case, by the seed a failure prints
//! ```
//!
//! Add `-- --nocapture` to see the per-shard summary. A disagreement is
//! shrunk (delta debugging over the calls) and reported with the case seed,
//! the shrunk calls and every disagreeing access with the four answers.
//!
//! Where the kernel does not run the program: a device numbered 0:0 has
//! `i_rdev == 0`, which `devcgroup_inode_permission` lets through (opening a
//! char node, access(F_OK) on either type; opening a block node is checked
//! again by `bdev_permission`), and a char 0:0 mknod is a whiteout. Those
//! accesses are compared between the model, the interpreter and `check`
//! only, and the kernel must let them through. `check` takes no empty
//! permission set, so access(F_OK) is compared without it.
//!
//! Without root (and outside CI) only the kernel-free part runs: the model
//! against the interpreter on maps built with the library's encoding, and
//! a set of wrong instructions that this must catch.

mod common;

use common::cases::{
    case_seed, ddmin, kernel_checks, listed, major_pool, random_major, random_minor, run_seeds,
    verdict, Hot, NodeCache, Rng, Settings, Spec, Ty, M, MAX_MINOR, R, W,
};
use common::{privileged, Scratch};
use model::{Call, Model};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;
use vircgroup_v2_devices::api;
use vircgroup_v2_devices::insn::Insn;
use vircgroup_v2_devices::program::{hash_program, interp, table_program};
use vircgroup_v2_devices::rules;
use vircgroup_v2_devices::table::Image;

const DEFAULT_CASES: u64 = 1000;
const DEFAULT_SEED: u64 = 0x0bac_1e5e_ed00_2025;
/// Shards of the kernel run, one #[test] each, run in parallel.
const SHARDS: u64 = 4;

/// The reference model: docs/API.md's semantics, nothing else.
mod model {
    use std::collections::BTreeMap;

    pub use super::common::cases::{num, perms_text, types, Spec, Ty};

    /// A call of the library.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Call {
        Allow(Spec),
        Deny(Spec),
        DenyAll,
        /// `allow_device_path` on a node of the type and numbers (b or c).
        AllowPath(Spec),
        DenyPath(Spec),
        /// `remove_prog`: the library forgets the cgroup and adopts the
        /// program from the kernel at the next call.
        Forget,
        /// `detach_prog`: no program, every device allowed; the next call
        /// starts from no rule.
        Detach,
    }

    impl std::fmt::Display for Call {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self {
                Call::Allow(s) => write!(f, "allow {s}"),
                Call::Deny(s) => write!(f, "deny {s}"),
                Call::DenyAll => write!(f, "deny_all"),
                Call::AllowPath(s) => write!(f, "allow_path {s} (a node)"),
                Call::DenyPath(s) => write!(f, "deny_path {s} (a node)"),
                Call::Forget => write!(f, "remove_prog"),
                Call::Detach => write!(f, "detach_prog"),
            }
        }
    }

    /// A rule's type and numbers (None is `*`).
    type Key = (Ty, Option<u32>, Option<u32>);

    /// The rules of one cgroup: per (type, major, minor) the permissions
    /// it holds (never none: a rule with no permission left is gone).
    #[derive(Debug, Clone, Default)]
    pub struct Model {
        /// A device program is attached: until then everything is allowed.
        pub attached: bool,
        /// The program attached is libvirt's own: the read-only calls
        /// (list, check) leave it in place, and the library holds no state
        /// for the cgroup until a call that changes it.
        pub libvirts: bool,
        rules: BTreeMap<Key, u8>,
    }

    impl Model {
        /// A cgroup nobody restricted yet.
        pub fn fresh() -> Model {
            Model::default()
        }

        /// A cgroup after deny-all.
        pub fn denied_all() -> Model {
            Model {
                attached: true,
                ..Model::default()
            }
        }

        /// A cgroup libvirt's C code set up with these rules, in this
        /// order: its map holds one rule per numbers, so the last rule
        /// written on some numbers replaces the earlier ones, whatever
        /// their types (the README: `b 1:3 r` wipes `c 1:3 rw`).
        pub fn set_up_by_libvirt(rules: &[Spec]) -> Model {
            let mut last = BTreeMap::new();
            for s in rules {
                last.insert((s.major, s.minor), *s);
            }
            let mut model = Model::denied_all();
            for s in last.values() {
                model.apply(&Call::Allow(*s));
            }
            model.libvirts = true;
            model
        }

        /// Every allow or deny attaches the program (libvirt prepares it
        /// first). Allow accumulates, `a` is both types; deny removes bits
        /// from that exact rule only; deny-all removes every rule. A node
        /// path stands for its type and numbers. Forgetting changes nothing;
        /// detaching leaves no program and no rule.
        pub fn apply(&mut self, call: &Call) {
            self.attached =
                !matches!(call, Call::Detach) && (self.attached || !matches!(call, Call::Forget));
            // Every call but forgetting replaces libvirt's program (detach
            // adopts it first).
            self.libvirts &= matches!(call, Call::Forget);
            match *call {
                Call::Allow(s) | Call::AllowPath(s) => {
                    for &t in types(s.ty) {
                        *self.rules.entry((t, s.major, s.minor)).or_insert(0) |= s.perms;
                    }
                }
                Call::Deny(s) | Call::DenyPath(s) => {
                    for &t in types(s.ty) {
                        let key = (t, s.major, s.minor);
                        if let Some(p) = self.rules.get_mut(&key) {
                            *p &= !s.perms;
                            if *p == 0 {
                                self.rules.remove(&key);
                            }
                        }
                    }
                }
                Call::DenyAll | Call::Detach => self.rules.clear(),
                Call::Forget => {}
            }
        }

        /// The decision for an access to one device: some single rule of
        /// its type naming it (exactly or by a wildcard) holds every
        /// requested permission; with none requested (access(F_OK)), some
        /// rule of its type names it.
        pub fn allows(&self, ty: Ty, major: u32, minor: u32, perms: u8) -> bool {
            !self.attached
                || self.rules.iter().any(|(&(t, ma, mi), &p)| {
                    t == ty
                        && ma.is_none_or(|m| m == major)
                        && mi.is_none_or(|m| m == minor)
                        && p & perms == perms
                })
        }

        /// `check`: whether every device the query names (both types for
        /// `a`, every number for `*`) is allowed. A device no rule names
        /// by number is covered only by rules at least as wide as the
        /// query, so it alone decides.
        pub fn check(&self, q: &Spec) -> bool {
            let unnamed = |half: fn(&Key) -> Option<u32>, max: u32| {
                (0..=max)
                    .find(|&n| !self.rules.keys().any(|k| half(k) == Some(n)))
                    .expect("fewer rules than numbers")
            };
            let major = q
                .major
                .unwrap_or_else(|| unnamed(|k| k.1, super::common::cases::MAX_MAJOR));
            let minor = q
                .minor
                .unwrap_or_else(|| unnamed(|k| k.2, super::common::cases::MAX_MINOR));
            types(q.ty)
                .iter()
                .all(|&t| self.allows(t, major, minor, q.perms))
        }

        /// Entries of the map: numbers with a rule of either type.
        pub fn count(&self) -> usize {
            let mut numbers: Vec<_> = self.rules.keys().map(|k| (k.1, k.2)).collect();
            numbers.sort();
            numbers.dedup();
            numbers.len()
        }

        /// cgroup v1 `devices.list`: one line per rule, a char and a block
        /// rule on the same numbers two lines (never an `a` line: v1 reads
        /// that as every device); sorted by type (`b`, `c`), major, minor,
        /// `*` after every number. No program: `a *:* rwm`.
        pub fn list(&self) -> String {
            if !self.attached {
                return "a *:* rwm\n".to_string();
            }
            let last = |n: Option<u32>| n.unwrap_or(u32::MAX);
            let mut lines: Vec<_> = self.rules.iter().collect();
            lines.sort_by_key(|&(&(t, ma, mi), _)| (t, last(ma), last(mi)));
            lines
                .iter()
                .map(|&(&(t, ma, mi), &p)| {
                    format!("{} {}:{} {}\n", t.letter(), num(ma), num(mi), perms_text(p))
                })
                .collect()
        }
    }
}

/// How the cgroup of a case starts.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Start {
    /// The cgroup of the previous case, reset by deny-all.
    DenyAll,
    /// A new cgroup: no program until the first call.
    New,
    /// A new cgroup set up by libvirt's C code: its program, and its map
    /// holding these rules in its encoding (`get_key`, `get_perms`),
    /// written in this order. The library adopts it at its first call.
    Libvirt(Vec<Spec>),
}

/// One test case: how the cgroup starts, the calls, the devices probed
/// (block and char each), and wildcard and `a` queries for `check`.
#[derive(Debug, Clone)]
struct Case {
    seed: u64,
    start: Start,
    calls: Vec<Call>,
    devices: Vec<(u32, u32)>,
    queries: Vec<Spec>,
}

impl Case {
    fn new(seed: u64) -> Case {
        let mut rng = Rng(seed);
        let start = rng.below(100);
        let (n_calls, wide) = match rng.below(100) {
            0..=2 => (0, false),
            3..=79 => (rng.range(1, 20), false),
            80..=91 => (rng.range(21, 60), false),
            _ => (rng.range(70, 300), true),
        };
        let hot = Hot::new(&mut rng, wide);
        let spec = |rng: &mut Rng| hot.spec(rng);
        let mut specs: Vec<Spec> = Vec::new();
        let start = match start {
            0..=7 => Start::New,
            8..=12 => {
                // libvirt's map has 64 entries.
                let n = if wide { 64 } else { rng.range(0, 20) };
                specs = (0..n).map(|_| spec(&mut rng)).collect();
                Start::Libvirt(specs.clone())
            }
            _ => Start::DenyAll,
        };
        let mut calls = Vec::new();
        // A node path names one device: b or c, no wildcard.
        let on_node = |rng: &mut Rng, mut s: Spec| {
            if s.ty == b'a' {
                s.ty = rng.pick(b"bc");
            }
            s.major = Some(s.major.unwrap_or_else(|| rng.pick(&hot.majors)));
            s.minor = Some(s.minor.unwrap_or_else(|| rng.pick(&hot.minors)));
            s
        };
        for _ in 0..n_calls {
            let r = rng.below(100);
            let call = match r {
                0..=1 if !wide => Call::DenyAll,
                2..=3 => Call::Forget,
                4 if !wide => Call::Detach,
                _ if r < if wide { 80 } else { 68 } => {
                    let s = spec(&mut rng);
                    if rng.percent(10) {
                        Call::AllowPath(on_node(&mut rng, s))
                    } else {
                        Call::Allow(s)
                    }
                }
                _ => {
                    let s = hot.deny_spec(&mut rng, &specs);
                    if rng.percent(10) {
                        Call::DenyPath(on_node(&mut rng, s))
                    } else {
                        Call::Deny(s)
                    }
                }
            };
            if let Call::Allow(s) | Call::Deny(s) | Call::AllowPath(s) | Call::DenyPath(s) = call {
                specs.push(s);
            }
            calls.push(call);
        }
        let any_major = |rng: &mut Rng| match rng.below(10) {
            0..=4 => rng.pick(&hot.majors),
            5..=7 => rng.pick(major_pool()),
            _ => random_major(rng),
        };
        let any_minor = |rng: &mut Rng| {
            if rng.percent(50) {
                rng.pick(&hot.minors)
            } else {
                random_minor(rng)
            }
        };
        let n_devices = if wide {
            rng.range(12, 24)
        } else {
            rng.range(6, 12)
        };
        let mut devices = Vec::new();
        for _ in 0..n_devices {
            let d = match rng.below(100) {
                // The numbers of a rule, a wildcard filled in.
                0..=44 if !specs.is_empty() => {
                    let s = rng.pick(&specs);
                    (
                        s.major.unwrap_or_else(|| any_major(&mut rng)),
                        s.minor.unwrap_or_else(|| any_minor(&mut rng)),
                    )
                }
                0..=69 => (rng.pick(&hot.majors), rng.pick(&hot.minors)),
                70..=84 => {
                    let (ma, mi) = (any_major(&mut rng), any_minor(&mut rng));
                    rng.pick(&[
                        (0, 0),
                        (4095, MAX_MINOR),
                        (4095, mi),
                        (ma, MAX_MINOR),
                        (0, mi),
                        (ma, 0),
                    ])
                }
                _ => (any_major(&mut rng), any_minor(&mut rng)),
            };
            if !devices.contains(&d) {
                devices.push(d);
            }
        }
        let queries = (0..4)
            .map(|_| {
                let (ma, mi) = rng.pick(&devices);
                Spec {
                    ty: rng.pick(b"abc"),
                    major: (!rng.percent(35)).then_some(ma),
                    minor: (!rng.percent(35)).then_some(mi),
                    perms: rng.range(1, 7) as u8,
                }
            })
            .collect();
        Case {
            seed,
            start,
            calls,
            devices,
            queries,
        }
    }

    fn model(&self) -> Model {
        let mut model = match &self.start {
            Start::DenyAll => Model::denied_all(),
            Start::New => Model::fresh(),
            Start::Libvirt(rules) => Model::set_up_by_libvirt(rules),
        };
        for call in &self.calls {
            model.apply(call);
        }
        model
    }
}

/// `struct bpf_cgroup_dev_ctx.access_type` as the kernel fills it:
/// `BPF_DEVCG_ACC_*` (mknod 1, read 2, write 4) << 16 | `BPF_DEVCG_DEV_*`
/// (block 1, char 2).
fn access_type(ty: Ty, perms: u8) -> u32 {
    let acc = [(R, 2), (W, 4), (M, 1)]
        .iter()
        .filter(|(p, _)| perms & p != 0)
        .fold(0, |a, (_, bit)| a | bit);
    (acc << 16)
        | match ty {
            Ty::Block => 1,
            Ty::Char => 2,
        }
}

/// What one leg answered about one access.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    Allow,
    Deny,
    /// This leg cannot be asked (check with no permission, the kernel
    /// for an access it does not check or that was not probed).
    NotAsked,
    Failed(String),
}

impl Answer {
    fn of(allowed: bool) -> Answer {
        if allowed {
            Answer::Allow
        } else {
            Answer::Deny
        }
    }

    fn text(&self) -> String {
        match self {
            Answer::Allow => "allow".into(),
            Answer::Deny => "deny".into(),
            Answer::NotAsked => "-".into(),
            Answer::Failed(e) => format!("failed ({e})"),
        }
    }
}

const LEGS: [&str; 4] = ["model", "interpreter", "check", "kernel"];

/// The four answers about one access, keyed by (type, major, minor, perms).
type Table = BTreeMap<(Ty, u32, u32, u8), [Answer; 4]>;

/// The interpreter's answer: the program run on `maps`; no program
/// attached allows everything.
fn interpret(
    prog: Option<&(Vec<Insn>, interp::Maps)>,
    ty: Ty,
    ma: u32,
    mi: u32,
    perms: u8,
) -> Answer {
    let Some((prog, maps)) = prog else {
        return Answer::Allow;
    };
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        interp::run(prog, maps, access_type(ty, perms), ma, mi)
    }));
    match run {
        Ok(0) => Answer::Deny,
        Ok(1) => Answer::Allow,
        Ok(r0) => Answer::Failed(format!("r0 = {r0}")),
        Err(e) => Answer::Failed(
            e.downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default(),
        ),
    }
}

/// The model's and the interpreter's answers for every device of the case,
/// both types, every combination of permissions (0 is access(F_OK)).
fn model_and_interpreter(
    case: &Case,
    model: &Model,
    prog: Option<&(Vec<Insn>, interp::Maps)>,
) -> Table {
    let mut table = Table::new();
    for &(ma, mi) in &case.devices {
        for ty in [Ty::Block, Ty::Char] {
            for perms in 0..=7 {
                table.insert(
                    (ty, ma, mi, perms),
                    [
                        Answer::of(model.allows(ty, ma, mi, perms)),
                        interpret(prog, ty, ma, mi, perms),
                        Answer::NotAsked,
                        Answer::NotAsked,
                    ],
                );
            }
        }
    }
    table
}

/// One line per access whose answers differ.
fn disagreements(table: &Table) -> Vec<String> {
    let mut out = Vec::new();
    for (&(ty, ma, mi, perms), answers) in table {
        let asked: Vec<&Answer> = answers.iter().filter(|a| **a != Answer::NotAsked).collect();
        let failed = asked.iter().any(|a| matches!(a, Answer::Failed(_)));
        if failed || asked.windows(2).any(|w| w[0] != w[1]) {
            let what = if perms == 0 {
                "F_OK".to_string()
            } else {
                model::perms_text(perms)
            };
            let legs: Vec<String> = LEGS
                .iter()
                .zip(answers)
                .map(|(leg, a)| format!("{leg} {}", a.text()))
                .collect();
            out.push(format!(
                "{} {ma}:{mi} {what}: {}",
                ty.letter(),
                legs.join(", ")
            ));
        }
    }
    out
}

#[derive(Debug, Default)]
struct Stats {
    cases: u64,
    calls: u64,
    probes: u64,
    kernel_allowed: u64,
    kernel_denied: u64,
    interpreted: u64,
    largest: usize,
    largest_max: usize,
    grown: u64,
    new: u64,
    libvirt: u64,
    zero_probed: u64,
}

/// One kernel leg: a scratch cgroup (reset or replaced per case), node
/// files for the devices probed.
struct Worker {
    mount: PathBuf,
    cg: Scratch,
    nodes: NodeCache,
    stats: Stats,
}

impl Worker {
    fn new(mount: &Path) -> Worker {
        Worker {
            mount: mount.to_path_buf(),
            cg: Scratch::new(mount),
            nodes: NodeCache::default(),
            stats: Stats::default(),
        }
    }

    /// Makes `call` through the library on the cgroup at `path`.
    fn apply(&mut self, path: &str, call: &Call) -> Result<(), String> {
        let on_node = |w: &mut Worker, s: &Spec, allow: bool| {
            let ty = if s.ty == b'b' { Ty::Block } else { Ty::Char };
            let node = w.nodes.node(ty, s.major.unwrap(), s.minor.unwrap());
            let perms = i32::from(s.perms);
            match if allow {
                api::allow_path(path, &node, perms)
            } else {
                api::deny_path(path, &node, perms)
            } {
                Ok(true) => Ok(()),
                Ok(false) => Err(format!("{node} is not a device node, says the library")),
                Err(e) => Err(e.to_string()),
            }
        };
        match call {
            Call::Allow(s) => api::allow(path, &s.rule()).map_err(|e| e.to_string()),
            Call::Deny(s) => api::deny(path, &s.rule()).map_err(|e| e.to_string()),
            Call::DenyAll => api::deny_all(path).map_err(|e| e.to_string()),
            Call::AllowPath(s) => on_node(self, s, true),
            Call::DenyPath(s) => on_node(self, s, false),
            Call::Forget => api::remove_prog(path).map_err(|e| e.to_string()),
            Call::Detach => api::detach_prog(path).map_err(|e| e.to_string()),
        }
    }

    /// Applies the case to the cgroup and compares every leg; returns one
    /// line per disagreement.
    fn run(&mut self, case: &Case) -> Vec<String> {
        self.nodes.trim();
        match &case.start {
            Start::DenyAll => {
                if let Err(e) = api::deny_all(self.cg.p()) {
                    return vec![format!("reset by deny_all failed: {e}")];
                }
            }
            Start::New => self.cg = Scratch::new(&self.mount),
            Start::Libvirt(rules) => {
                self.cg = Scratch::new(&self.mount);
                set_up_like_libvirt(&self.cg, rules);
            }
        }
        let path = self.cg.p().to_string();
        for (i, call) in case.calls.iter().enumerate() {
            if let Err(e) = self.apply(&path, call) {
                return vec![format!("call {i} ({call}) failed: {e}")];
            }
        }
        let model = case.model();
        let mut out = Vec::new();

        match api::list(&path) {
            Ok(list) if list == model.list() => {}
            Ok(list) => out.push(format!(
                "list: the library says\n{list}the model says\n{}",
                model.list()
            )),
            Err(e) => out.push(format!("list failed: {e}")),
        }
        // After list, the library holds the cgroup's program when it is its
        // own; libvirt's stays libvirt's (list only reads it).
        let held = model.attached && !model.libvirts;
        match api::state(&path) {
            Ok(s)
                if s.count != if held { model.count() } else { 0 }
                    || s.count > s.max
                    || (s.mapfd >= 0) != held =>
            {
                out.push(format!(
                    "state: count {} of max {} with mapfd {}; \
                     the model has {} rules (program attached: {}, libvirt's: {})",
                    s.count,
                    s.max,
                    s.mapfd,
                    model.count(),
                    model.attached,
                    model.libvirts
                ))
            }
            Ok(s) => {
                self.stats.largest = self.stats.largest.max(s.count);
                self.stats.largest_max = self.stats.largest_max.max(s.max);
                self.stats.grown += u64::from(s.count > api::INITIAL_MAX as usize);
            }
            Err(e) => out.push(format!("state failed: {e}")),
        }
        let snapshot = match vircgroup_v2_devices::testing::snapshot(&path) {
            Ok(s) => s,
            Err(e) => return [out, vec![format!("snapshot failed: {e}")]].concat(),
        };
        if snapshot.is_some() != model.attached {
            out.push(format!(
                "snapshot: program held {}, the model says attached {}",
                snapshot.is_some(),
                model.attached
            ));
        }
        let mut table = model_and_interpreter(case, &model, snapshot.as_ref());
        self.stats.interpreted += table.len() as u64;

        for (&(ty, ma, mi, perms), answers) in table.iter_mut() {
            if perms != 0 {
                let spec = Spec {
                    ty: ty.letter() as u8,
                    major: Some(ma),
                    minor: Some(mi),
                    perms,
                };
                answers[2] = match api::check(&path, &spec.rule()) {
                    Ok(allowed) => Answer::of(allowed),
                    Err(e) => Answer::Failed(e.to_string()),
                };
            }
        }

        // The kernel: one probe child for every access of the case.
        let accesses = self.nodes.accesses(&case.devices);
        self.stats.zero_probed += case.devices.iter().filter(|&&d| d == (0, 0)).count() as u64;
        let args: Vec<String> = accesses.iter().map(|a| a.arg.clone()).collect();
        let results = self.cg.probe(&args);
        for (a, result) in accesses.iter().zip(results) {
            let (ty, ma, mi, kind) = (a.ty, a.major, a.minor, a.kind);
            let answer = match verdict(&result) {
                Some(allowed) => Answer::of(allowed),
                None => Answer::Failed(format!("the probe's {kind} gave {result}")),
            };
            let allowed = answer == Answer::Allow;
            self.stats.probes += 1;
            if allowed {
                self.stats.kernel_allowed += 1;
            } else {
                self.stats.kernel_denied += 1;
            }
            if kernel_checks(ty, ma, mi, kind) {
                table.get_mut(&(ty, ma, mi, a.perms)).unwrap()[3] = answer;
            } else if !allowed {
                out.push(format!(
                    "kernel: {kind} on {} {ma}:{mi} gave {result}, but the kernel does not check it",
                    ty.letter()
                ));
            }
        }
        out.extend(disagreements(&table));

        for q in &case.queries {
            let expected = model.check(q);
            match api::check(&path, &q.rule()) {
                Ok(got) if got == expected => {}
                Ok(got) => out.push(format!(
                    "check({q}): library {}, model {}",
                    Answer::of(got).text(),
                    Answer::of(expected).text()
                )),
                Err(e) => out.push(format!("check({q}) failed: {e}")),
            }
        }
        self.stats.cases += 1;
        self.stats.calls += case.calls.len() as u64;
        self.stats.new += u64::from(case.start == Start::New);
        self.stats.libvirt += u64::from(matches!(case.start, Start::Libvirt(_)));
        out
    }
}

/// The case with as few calls, then as few rules set up by libvirt, as
/// still fail.
fn shrink(case: &Case, mut fails: impl FnMut(&Case) -> bool) -> Case {
    let mut best = case.clone();
    best.calls = ddmin(&case.calls, |calls| {
        fails(&Case {
            calls: calls.to_vec(),
            ..case.clone()
        })
    });
    if let Start::Libvirt(rules) = &case.start {
        let rules = ddmin(rules, |rules| {
            fails(&Case {
                start: Start::Libvirt(rules.to_vec()),
                ..best.clone()
            })
        });
        best.start = Start::Libvirt(rules);
    }
    best
}

/// Sets up `cg` the way libvirt's C code does: a 64-entry map in its
/// encoding, its program, attached without flags.
fn set_up_like_libvirt(cg: &Scratch, rules: &[Spec]) {
    use std::os::fd::{AsFd, AsRawFd};
    use vircgroup_v2_devices::{program::libvirt_program, sys};
    let map = sys::map_create(sys::BPF_MAP_TYPE_HASH, 8, 4, 64, "").expect("libvirt's map");
    for s in rules {
        let n = |n: Option<u32>| n.map_or(-1, |n| n as i32);
        let key = rules::get_key(n(s.major), n(s.minor));
        let value = rules::get_perms(i32::from(s.perms), s.ty);
        sys::map_update(map.as_fd(), key, value).expect("libvirt's rule");
    }
    let prog = sys::prog_load(
        sys::BPF_PROG_TYPE_CGROUP_DEVICE,
        &libvirt_program(map.as_raw_fd()),
        "GPL",
        "",
    )
    .expect("libvirt's program");
    let cgfd = std::fs::File::open(&cg.path).expect("open the cgroup");
    sys::prog_attach(cgfd.as_fd(), prog.as_fd(), sys::BPF_CGROUP_DEVICE, 0, None)
        .expect("attach libvirt's program");
}

/// The report of a disagreement, up to the list of disagreements.
fn report(run: &str, case: &Case, shrunk: &Case) -> String {
    let mut s = format!(
        "ORACLE DISAGREEMENT ({run})\n\
         case seed {:#x}; replay: ORACLE_REPLAY={:#x} cargo test --test oracle -- --nocapture\n\
         cgroup: {}\n\
         calls (shrunk from {} to {}):\n",
        case.seed,
        case.seed,
        match &case.start {
            Start::DenyAll => "reset by deny_all".to_string(),
            Start::New => "new, no program before the calls".to_string(),
            Start::Libvirt(rules) => format!(
                "set up by libvirt's C code with {} (shrunk from {})",
                match &shrunk.start {
                    Start::Libvirt(r) if !r.is_empty() => r
                        .iter()
                        .map(|s| s.to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    _ => "no rule".to_string(),
                },
                rules.len()
            ),
        },
        case.calls.len(),
        shrunk.calls.len()
    );
    for call in &shrunk.calls {
        s += &format!("  {call}\n");
    }
    s += "disagreements (type major:minor access: the four answers; - is not asked):\n";
    s
}

/// Shard `k`: cases `k`, `k + SHARDS`, ... of the run, against the kernel.
fn shard(k: u64) {
    let Some(mount) = privileged() else { return };
    let s = Settings::from_env("ORACLE", DEFAULT_CASES, DEFAULT_SEED);
    let seeds = s.shard(k, SHARDS);
    if seeds.is_empty() {
        return;
    }
    let start = Instant::now();
    let mut worker = Worker::new(&mount);
    run_seeds(
        &seeds,
        Case::new,
        |c| worker.run(c),
        |c, fails| shrink(c, fails),
        report,
    );
    let st = &worker.stats;
    println!(
        "oracle shard {k}/{SHARDS}: {} cases ({}), 0 disagreements in {:.1?}: \
         {} calls, {} kernel probes ({} allowed, {} denied), {} interpreter runs, \
         {} cases on a new cgroup, {} set up by libvirt, largest map {} rules in {} entries ({} cases past {}), \
         0:0 probed {} times",
        st.cases,
        s.run_name(),
        start.elapsed(),
        st.calls,
        st.probes,
        st.kernel_allowed,
        st.kernel_denied,
        st.interpreted,
        st.new,
        st.libvirt,
        st.largest,
        st.largest_max,
        st.grown,
        api::INITIAL_MAX,
        st.zero_probed
    );
    // The generator reaches what it is meant to.
    if s.replay.is_none() && st.cases >= 200 {
        assert!(st.grown > 0, "no case grew the map: {st:?}");
        assert!(st.kernel_allowed > 0 && st.kernel_denied > 0, "{st:?}");
        assert!(st.new > 0 && st.libvirt > 0 && st.zero_probed > 0, "{st:?}");
    }
}

#[test]
fn oracle_shard_0() {
    shard(0);
}

#[test]
fn oracle_shard_1() {
    shard(1);
}

#[test]
fn oracle_shard_2() {
    shard(2);
}

#[test]
fn oracle_shard_3() {
    shard(3);
}

/// The rules the library holds after a case, worked out without the
/// kernel with the library's encoding (`Rule::value`, `Rule::remove_from`).
/// None when no program is attached.
fn encoded(case: &Case) -> Option<HashMap<u64, u32>> {
    let mut map: HashMap<u64, u32> = HashMap::new();
    let mut attached = case.start != Start::New;
    if let Start::Libvirt(entries) = &case.start {
        for s in entries {
            let n = |n: Option<u32>| n.map_or(-1, |n| n as i32);
            let value = rules::get_perms(i32::from(s.perms), s.ty);
            let key = rules::get_key(n(s.major), n(s.minor));
            map.insert(key, rules::from_libvirt_value(value).unwrap());
        }
    }
    for call in &case.calls {
        attached = !matches!(call, Call::Detach) && (attached || !matches!(call, Call::Forget));
        match call {
            Call::Allow(s) | Call::AllowPath(s) => {
                let r = s.rule();
                *map.entry(r.key()).or_default() |= r.value();
            }
            Call::Deny(s) | Call::DenyPath(s) => {
                let r = s.rule();
                if let Some(&v) = map.get(&r.key()) {
                    match r.remove_from(v) {
                        0 => map.remove(&r.key()),
                        v => map.insert(r.key(), v),
                    };
                }
            }
            Call::DenyAll | Call::Detach => map.clear(),
            Call::Forget => {}
        }
    }
    attached.then_some(map)
}

/// A program of the library and the maps it reads, made without the
/// kernel from the rules of a case.
type Offline = dyn Fn(&HashMap<u64, u32>) -> (Vec<Insn>, interp::Maps);

/// Format 5 (fds 3 and 4): the hash map and the index the library writes.
fn hash_offline(prog: Vec<Insn>) -> impl Fn(&HashMap<u64, u32>) -> (Vec<Insn>, interp::Maps) {
    move |map| {
        let words = vircgroup_v2_devices::hash::layout::index_words(map)
            .into_iter()
            .collect();
        let maps = interp::Maps::from([
            (3, interp::Map::Hash(map.clone())),
            (
                4,
                interp::Map::Array {
                    len: vircgroup_v2_devices::hash::layout::INDEX_ENTRIES,
                    words,
                },
            ),
        ]);
        (prog.clone(), maps)
    }
}

/// Format 6 (fd 3): the table the library lays out, with `mutate` applied
/// to its program.
fn table_offline(
    mutate: impl Fn(&mut Vec<Insn>),
) -> impl Fn(&HashMap<u64, u32>) -> (Vec<Insn>, interp::Maps) {
    move |map| {
        let max = (map.len() as u32).next_power_of_two().max(64);
        let image = Image::build(max, map).expect("a table image");
        let mut prog = table_program(3, image.bits, image.mult, image.minor_code());
        mutate(&mut prog);
        (
            prog,
            interp::Maps::from([(3, interp::Map::Value(image.bytes()))]),
        )
    }
}

/// The model against the interpreter running a program on the maps
/// `program` makes of the case's rules.
fn offline(program: &Offline, case: &Case) -> Vec<String> {
    let loaded = encoded(case).map(|m| program(&m));
    disagreements(&model_and_interpreter(case, &case.model(), loaded.as_ref()))
}

/// Without the kernel: the model and the interpreter agree on many cases,
/// for both formats.
#[test]
fn model_and_interpreter_agree_without_the_kernel() {
    let formats: [(&str, Box<Offline>); 2] = [
        ("format 5", Box::new(hash_offline(hash_program(3, 4)))),
        ("format 6", Box::new(table_offline(|_| {}))),
    ];
    for (name, program) in &formats {
        for i in 0..2000 {
            let case = Case::new(case_seed(DEFAULT_SEED ^ 1, i));
            let found = offline(program.as_ref(), &case);
            assert!(
                found.is_empty(),
                "{name}: {}{}",
                report("offline", &case, &case),
                listed(&found)
            );
        }
    }
}

/// One wrong field in one instruction, each a program the verifier would
/// load: the oracle must notice it within a few hundred cases.
#[test]
fn a_wrong_instruction_is_caught() {
    enum Field {
        Imm,
        Off,
    }
    use Field::*;
    // (what, instruction, field, right value, wrong value)
    let mutants: &[(&str, usize, Field, i32, i32)] = &[
        ("type bit: block for char", 2, Imm, 2, 1),
        ("char rule read 8 bits too high", 3, Imm, 2, 3),
        ("access bits shifted", 4, Imm, 16, 17),
        ("no presence bit (F_OK, the index bits)", 5, Imm, 8, 0),
        ("major read from the minor", 7, Off, 4, 8),
        ("minor read from the major", 9, Off, 8, 4),
        ("exact hit denied", 20, Off, 69, 67),
        ("index: major wildcard of block only", 22, Imm, 0x808, 0x8),
        ("index: *:* bit in the wrong place", 24, Imm, 1, 2),
        ("index slot: the whole key, not the major", 27, Imm, 32, 0),
        (
            "major wildcard key with a 20-bit minor",
            38,
            Imm,
            -1,
            0xf_ffff,
        ),
        ("index: global slot is major 4095's", 50, Imm, 4096, 4095),
        ("index: minor wildcard of char only", 60, Imm, 0x808, 0x800),
        ("minor wildcard key's major half", 63, Imm, 32, 31),
        ("index: *:* of char only", 75, Imm, 0x404, 0x400),
    ];
    let good = hash_program(3, 4);
    let cases: Vec<Case> = (0..500)
        .map(|i| Case::new(case_seed(DEFAULT_SEED ^ 2, i)))
        .collect();
    for (what, at, field, right, wrong) in mutants {
        let mut prog = good.clone();
        let insn = &mut prog[*at];
        let now = match field {
            Imm => std::mem::replace(&mut insn.imm, *wrong),
            Off => i32::from(std::mem::replace(&mut insn.off, *wrong as i16)),
        };
        assert_eq!(
            now, *right,
            "instruction {at} changed: update mutant {what:?}"
        );
        let program = hash_offline(prog);
        let caught = cases
            .iter()
            .enumerate()
            .find_map(|(i, c)| offline(&program, c).into_iter().next().map(|d| (i, d)));
        let Some((i, first)) = caught else {
            panic!(
                "mutant {what:?} (instruction {at}) survived {} cases",
                cases.len()
            );
        };
        println!("mutant {what:?} caught by case {i}: {first}");
    }
}

/// The same for the table program (format 6): one wrong field in one
/// instruction, with the indices of `src/program/table.golden`.
#[test]
fn a_wrong_instruction_of_the_table_program_is_caught() {
    // (what, the instruction as program/table.golden lists it (its first
    // occurrence; the program with and without the *:m probe share these),
    // the wrong value for its imm, or its off for a load)
    let mutants: &[(&str, &str, i32)] = &[
        ("access bits shifted", "r3 >>= 16", 17),
        ("type bit: block for char", "r2 &= 2", 1),
        ("char masks read 8 bits too high", "r2 <<= 2", 3),
        ("the next major's word", "r2 = *(u32 *)(r1 +128)", 132),
        ("majors of 11 bits", "r7 &= 4095", 2047),
        ("the M:* and *:* bit is the read bit", "if r0 & 0x1 goto", 4),
        ("exact hint in the wrong bit", "if r2 & 0x10000", 0x8000),
        ("exact key's major one bit low", "r4 <<= 38", 37),
        ("exact key's minor one bit high", "r5 <<= 18", 19),
        ("exact key with the major kind", "r4 |= 65536", 0x20000),
        (
            "first slot of a bucket skipped",
            "r0 = *(u64 *)(r5 +16512)",
            16520,
        ),
        ("*:minor key's minor one bit low", "r4 <<= 18", 17),
        (
            "ANY_MINOR hint in the wrong bit",
            "if r0 & 0x10000",
            0x20000,
        ),
        ("*:minor key with the exact kind", "r4 |= 196608", 0x10000),
    ];
    let cases: Vec<Case> = (0..500)
        .map(|i| Case::new(case_seed(DEFAULT_SEED ^ 3, i)))
        .collect();
    for &(what, text, wrong) in mutants {
        let program = table_offline(move |prog: &mut Vec<Insn>| {
            let listing = vircgroup_v2_devices::testing::disasm::disassemble(prog);
            // Only programs that have the instruction are mutated (the *:m
            // probe is in tables with *:m rules only).
            let Some(at) = listing.lines().find(|l| l.contains(text)).map(|l| {
                l.trim_start()
                    .split(':')
                    .next()
                    .unwrap()
                    .parse::<usize>()
                    .unwrap()
            }) else {
                return;
            };
            let insn = &mut prog[at];
            if insn.code & 0x07 == 0x01 {
                insn.off = wrong as i16;
            } else {
                insn.imm = wrong;
            }
        });
        let at = text;
        let caught = cases
            .iter()
            .enumerate()
            .find_map(|(i, c)| offline(&program, c).into_iter().next().map(|d| (i, d)));
        let Some((i, first)) = caught else {
            panic!(
                "table mutant {what:?} (instruction {at}) survived {} cases",
                cases.len()
            );
        };
        println!("table mutant {what:?} caught by case {i}: {first}");
    }
}

/// The model itself, on the examples docs/API.md and the README give.
#[test]
fn the_model_follows_the_documented_semantics() {
    let spec = |ty, major, minor, perms| Spec {
        ty,
        major,
        minor,
        perms,
    };
    let mut m = Model::fresh();
    assert!(m.allows(Ty::Char, 1, 3, R | W | M));
    assert_eq!(m.list(), "a *:* rwm\n");
    m.apply(&Call::Allow(spec(b'c', Some(1), Some(3), R)));
    m.apply(&Call::Allow(spec(b'c', Some(1), Some(3), W)));
    assert!(m.allows(Ty::Char, 1, 3, R | W), "permissions accumulate");
    assert!(!m.allows(Ty::Block, 1, 3, R), "char and block are apart");
    m.apply(&Call::Allow(spec(b'b', Some(1), Some(3), R)));
    assert!(m.allows(Ty::Char, 1, 3, R | W), "b does not wipe c");
    assert_eq!(m.list(), "b 1:3 r\nc 1:3 rw\n");
    assert_eq!(m.count(), 1);
    m.apply(&Call::Allow(spec(b'b', Some(1), Some(3), W)));
    assert_eq!(
        m.list(),
        "b 1:3 rw\nc 1:3 rw\n",
        "never merged into 'a 1:3 rw'"
    );
    // One rule must hold every bit: b *:* r plus b 8:0 w is not rw on 8:0.
    m.apply(&Call::Allow(spec(b'b', None, None, R)));
    m.apply(&Call::Allow(spec(b'b', Some(8), Some(0), W)));
    assert!(!m.allows(Ty::Block, 8, 0, R | W));
    assert!(m.allows(Ty::Block, 8, 0, R) && m.allows(Ty::Block, 8, 0, W));
    // access(F_OK): a rule of the type names the device.
    assert!(m.allows(Ty::Block, 9, 9, 0));
    assert!(!m.allows(Ty::Char, 9, 9, 0));
    assert_eq!(m.list(), "b 1:3 rw\nb 8:0 w\nb *:* r\nc 1:3 rw\n");
    // Deny: bits of that exact rule; none left, no rule; missing: no-op.
    m.apply(&Call::Deny(spec(b'a', Some(1), Some(3), W)));
    assert_eq!(m.list(), "b 1:3 r\nb 8:0 w\nb *:* r\nc 1:3 r\n");
    m.apply(&Call::Deny(spec(b'b', Some(8), None, R | W | M)));
    m.apply(&Call::Deny(spec(b'b', Some(8), Some(0), W)));
    assert_eq!(m.list(), "b 1:3 r\nb *:* r\nc 1:3 r\n");
    assert_eq!(m.count(), 2);
    // check: wildcard queries need a rule as wide.
    m.apply(&Call::Allow(spec(b'c', Some(136), None, R | W)));
    assert!(m.check(&spec(b'c', Some(136), None, R)));
    assert!(!m.check(&spec(b'c', None, Some(0), R)));
    assert!(m.check(&spec(b'b', None, None, R)));
    assert!(m.check(&spec(b'a', Some(136), Some(1), R)));
    assert!(!m.check(&spec(b'a', Some(136), Some(1), W)));
    m.apply(&Call::DenyAll);
    assert_eq!(m.list(), "");
    assert!(!m.allows(Ty::Char, 0, 0, 0));
    // libvirt's C code: the last rule written on some numbers wins.
    let m = Model::set_up_by_libvirt(&[
        spec(b'c', Some(1), Some(3), R | W),
        spec(b'b', Some(1), Some(3), R),
        spec(b'a', Some(136), None, W),
    ]);
    assert_eq!(m.list(), "b 1:3 r\nb 136:* w\nc 136:* w\n");
    // Generated cases are what they say: the same seed, the same case.
    let (a, b) = (Case::new(7), Case::new(7));
    assert_eq!((a.calls, a.devices), (b.calls, b.devices));
}
