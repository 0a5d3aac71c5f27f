//! The benchmark of issue 7: what one device check costs the kernel, and
//! what the control plane costs, side by side with the alternatives, in one
//! run. Everything it claims is a ratio of things measured in the same run,
//! interleaved round by round.
//!
//! Run as root (it makes cgroups, device nodes and BPF programs, and removes
//! them all when it ends, also on error, panic or Ctrl-C):
//!
//! ```sh
//! cargo bench --bench devices              # the full run: a few minutes
//! cargo bench --bench devices -- --quick   # a smoke run: a few seconds
//! cargo bench --bench devices -- --help    # rounds, opens per measurement
//! ```
//!
//! **Per-check cost.** The kernel's own run-time stats: `BPF_ENABLE_STATS`
//! turns them on while this process holds the fd (the sysctl is never
//! written), and `BPF_OBJ_GET_INFO_BY_FD` gives each program's
//! `run_time_ns` and `run_cnt`. For each case, one child process opens the
//! case's device node K times in the cgroup of each of the case's programs
//! (every kind, every rule count), moving between the cgroups every K/20
//! opens and reading the stats around each chunk: the programs are
//! measured side by side, a slow spell of the machine hits them alike, and
//! a program's cost is the median of its chunks (time the child spends
//! preempted inside a program counts as its run time). Every open runs the
//! program once (checked: `run_cnt` grows by exactly the opens, per chunk
//! and in all), and every answer is checked (EPERM for a denial, anything
//! else got past the cgroup), so a wrong setup cannot produce a number.
//! The programs:
//!
//! - ours: whatever the library attaches, set up through its public API as
//!   a user would (`devices::deny_all`, then `devices::allow` per rule) and
//!   found with `BPF_PROG_QUERY`: nothing is assumed of its maps or code;
//! - seed: libvirt's program (`program::libvirt_program`) on a hash map in
//!   libvirt's format (`rules::get_key`, `rules::get_perms`), sized as
//!   libvirt grows it (64, doubled), attached with no flags;
//! - runc-style: one compare block per rule, first match wins, as runc's
//!   `devicefilter` compiles a rule list (the probed rule is the last block);
//! - floor: `r0 = 1; exit`, the cost of running any program at all; net
//!   cost = gross - floor.
//!
//! Each program has its own cgroup under one scratch parent. Every round
//! sets every program up again (each hash map draws its own hash seed) and
//! measures every case once, in a shuffled order. Net costs are taken
//! against the floor measured by the same child, ratios are medians over
//! rounds of the ratio of two nets measured by the same child.
//!
//! **Control plane.** bpf(2) calls per allow and per deny on a held
//! program, counted by `sys::hook`; 10,000 allows on a fresh cgroup (map
//! growth included) against 10,000 `BPF_MAP_UPDATE_ELEM` into a map already
//! large enough; QEMU's start (deny-all and libvirt's default ACL through the
//! library) against a replay of libvirt's C sequence. Times are compared as
//! ratios of medians over rounds in which both sides alternate.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use vircgroup_v2_devices::cgroup::cgroup2_mount;
use vircgroup_v2_devices::devices;
use vircgroup_v2_devices::insn::op::*;
use vircgroup_v2_devices::insn::reg::*;
use vircgroup_v2_devices::insn::{alu32_imm, exit, jmp_imm, jmp_reg, ldx_mem, mov64_imm, Insn};
use vircgroup_v2_devices::program::libvirt_program;
use vircgroup_v2_devices::rules::{self, Rule, READ, RW, RWM, WRITE};
use vircgroup_v2_devices::sys::{self, hook, BPF_CGROUP_DEVICE, BPF_PROG_TYPE_CGROUP_DEVICE};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

// ---------------------------------------------------------------- options

const USAGE: &str = "\
usage: cargo bench --bench devices -- [OPTIONS]   (as root)

  --quick          a smoke run in a few seconds (3 rounds, 1000 opens,
                   3 control-plane rounds, --reuse, unless given); rough
  --rounds N       per-check rounds (default 21; medians over rounds)
  --opens K        opens per measurement (default 20000), in 20 chunks
  --reuse          set the programs up once, not every round (each map's
                   hash seed is then one draw for the whole run)
  --cp-rounds N    control-plane rounds (default 15)
  --help           this text";

struct Options {
    rounds: usize,
    opens: u32,
    cp_rounds: usize,
    /// QEMU starts per side and control-plane round.
    starts: usize,
    /// Set the programs up once instead of every round.
    reuse: bool,
    /// The options as given (without cargo's `--bench`), for the report.
    given: Vec<String>,
}

/// The options; `--quick` sets the defaults the other options change,
/// wherever it is.
fn options(args: &[String]) -> Result<Option<Options>, String> {
    let quick = args.iter().any(|a| a == "--quick");
    let mut o = Options {
        rounds: if quick { 3 } else { 21 },
        opens: if quick { 1000 } else { 20_000 },
        cp_rounds: if quick { 3 } else { 15 },
        starts: if quick { 4 } else { 10 },
        reuse: quick,
        given: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| -> Result<usize, String> {
            let v = it.next().ok_or(format!("{name} needs a value"))?;
            o.given.extend([name.to_string(), v.clone()]);
            match v.parse::<usize>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(format!("{name}: {v:?} is not a positive number")),
            }
        };
        match arg.as_str() {
            // cargo bench passes --bench to a harness = false target.
            "--bench" => {}
            "--quick" => o.given.push(arg.clone()),
            "--reuse" => {
                o.given.push(arg.clone());
                o.reuse = true;
            }
            "--rounds" => o.rounds = value("--rounds")?,
            "--opens" => {
                o.opens = value("--opens")?
                    .try_into()
                    .ok()
                    .filter(|&k| k >= CHUNKS)
                    .ok_or(format!("--opens: from {CHUNKS} to {}", u32::MAX))?
            }
            "--cp-rounds" => o.cp_rounds = value("--cp-rounds")?,
            "--help" | "-h" => return Ok(None),
            other => return Err(format!("unknown option {other:?}\n{USAGE}")),
        }
    }
    Ok(Some(o))
}

// ---------------------------------------------------------------- signals

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// Ctrl-C (or SIGTERM, SIGHUP) ends the run at the next step instead of
/// killing the process, so that every guard still cleans up.
fn catch_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe; it lives as long as the process.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
}

fn check_stop() -> Res<()> {
    if STOP.load(Ordering::Relaxed) {
        Err("interrupted".into())
    } else {
        Ok(())
    }
}

// ---------------------------------------------------------------- the child

/// First argument of the benchmark re-executed as the child that opens a
/// node in a loop (so the parent never forks without exec).
const CHILD: &str = "__open-loop";

/// Chunks each program's opens are split into. A child measures the
/// programs of one case side by side, moving between their
/// cgroups chunk by chunk, so that a slow spell of the machine (a busy
/// sibling CPU, the hypervisor) hits them alike; a program's cost is the
/// median over its chunks, so that a chunk in which the child was
/// preempted inside the program (that time counts as run time) is left out.
const CHUNKS: u32 = 20;

/// `__open-loop NODE K (CGROUP PROG_ID allow|deny)...`: opens NODE
/// read-only K times in each CGROUP, in [`CHUNKS`] chunks per cgroup, the
/// cgroups taking turns chunk by chunk (the order shifts every chunk), and
/// prints one line per chunk: the cgroup's index and the ns per run of
/// program PROG_ID over the chunk. Fails unless each chunk ran the program
/// once per open and every answer is the expected one (deny: EPERM; allow:
/// anything else, as a node without a driver gives ENXIO or EIO once the
/// cgroup let it through).
fn child(args: &[String]) -> ExitCode {
    match open_loop(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{CHILD}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A cgroup the child opens the node in.
struct Member {
    cgroup: String,
    prog: OwnedFd,
    allow: bool,
}

fn open_loop(args: &[String]) -> Res<()> {
    let usage = "expected NODE K (CGROUP PROG_ID allow|deny)...";
    let [node, count, members @ ..] = args else {
        return Err(usage.into());
    };
    if members.is_empty() || members.len() % 3 != 0 {
        return Err(usage.into());
    }
    let count: u64 = count.parse()?;
    let members = members
        .chunks(3)
        .map(|m| -> Res<Member> {
            Ok(Member {
                cgroup: m[0].clone(),
                prog: sys::prog_get_fd_by_id(m[1].parse()?)?,
                allow: match m[2].as_str() {
                    "allow" => true,
                    "deny" => false,
                    other => return Err(format!("{usage}, not {other:?}").into()),
                },
            })
        })
        .collect::<Res<Vec<Member>>>()?;
    let mut open = OpenOptions::new();
    open.read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    let chunks = u64::from(CHUNKS);
    let mut out = String::new();
    for chunk in 0..chunks {
        let n = count / chunks + u64::from(chunk < count % chunks);
        for turn in 0..members.len() {
            let i = (turn + chunk as usize) % members.len();
            let m = &members[i];
            std::fs::write(format!("{}/cgroup.procs", m.cgroup), "0")
                .map_err(|e| format!("cannot join {}: {e}", m.cgroup))?;
            let before = sys::prog_info(m.prog.as_fd())?;
            let (mut eperm, mut other) = (0, None);
            for _ in 0..n {
                match open.open(node) {
                    Ok(_) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EPERM) => eperm += 1,
                    Err(e) => other = Some(e),
                }
            }
            let after = sys::prog_info(m.prog.as_fd())?;
            if (m.allow && eperm > 0) || (!m.allow && eperm != n) {
                return Err(format!(
                    "{node} in {}: expected {}, got EPERM for {eperm} of {n} opens \
                     (other answer: {other:?})",
                    m.cgroup,
                    if m.allow { "allow" } else { "deny" }
                )
                .into());
            }
            let runs = after.run_cnt - before.run_cnt;
            if runs != n {
                return Err(
                    format!("{}: the program ran {runs} times for {n} opens", m.cgroup).into(),
                );
            }
            let ns = (after.run_time_ns - before.run_time_ns) as f64 / n.max(1) as f64;
            let _ = writeln!(out, "{i} {ns}");
        }
    }
    print!("{out}");
    Ok(())
}

// ---------------------------------------------------------------- guards

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A name no other run (nor an earlier one of this process) uses.
fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}-{}-{}-{nanos:x}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// A cgroup this benchmark made. On drop: the programs it attached are
/// detached, the library's program (when the library was used on it) is
/// detached and forgotten, and the directory is removed.
struct Cg {
    path: PathBuf,
    dir: File,
    /// The library was called on this cgroup.
    library: bool,
    /// Programs this benchmark attached itself.
    attached: Vec<OwnedFd>,
    /// Other fds to keep until the cgroup goes (a replayed libvirt's map).
    keep: Vec<OwnedFd>,
}

impl Cg {
    fn new(parent: &Path, name: &str) -> Res<Cg> {
        let path = parent.join(name);
        std::fs::create_dir(&path).map_err(|e| format!("mkdir {}: {e}", path.display()))?;
        let dir = match File::open(&path) {
            Ok(dir) => dir,
            Err(e) => {
                let _ = std::fs::remove_dir(&path);
                return Err(format!("open {}: {e}", path.display()).into());
            }
        };
        Ok(Cg {
            path,
            dir,
            library: false,
            attached: Vec::new(),
            keep: Vec::new(),
        })
    }

    fn p(&self) -> &str {
        self.path
            .to_str()
            .expect("the names this benchmark makes are UTF-8")
    }

    /// Marks the cgroup as the library's before the library touches it.
    fn library(&mut self) -> &str {
        self.library = true;
        self.p()
    }

    /// Attaches `prog` with no flags, as libvirt does.
    fn attach(&mut self, prog: OwnedFd) -> Res<()> {
        sys::prog_attach(self.dir.as_fd(), prog.as_fd(), BPF_CGROUP_DEVICE, 0, None)?;
        self.attached.push(prog);
        Ok(())
    }

    /// The one program attached to the cgroup (a new fd on it).
    fn program(&self) -> Res<OwnedFd> {
        let attached = sys::prog_query(self.dir.as_fd(), BPF_CGROUP_DEVICE)?;
        match attached.ids[..] {
            [id] => Ok(sys::prog_get_fd_by_id(id)?),
            ref ids => Err(format!(
                "{}: expected one device program, found {ids:?}",
                self.path.display()
            )
            .into()),
        }
    }
}

impl Drop for Cg {
    fn drop(&mut self) {
        for prog in self.attached.drain(..) {
            if let Err(e) = sys::prog_detach(self.dir.as_fd(), prog.as_fd(), BPF_CGROUP_DEVICE) {
                eprintln!("cleanup: {}: {e}", self.path.display());
            }
        }
        if self.library {
            let path = self.p().to_string();
            if let Err(e) = devices::detach_prog(&path) {
                eprintln!("cleanup: {path}: {e}");
            }
            let _ = devices::remove_prog(&path);
        }
        // A child that just exited may keep the cgroup busy for a moment.
        for _ in 0..100 {
            match std::fs::remove_dir(&self.path) {
                Ok(()) => return,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => {
                    eprintln!("cleanup: cannot remove {}: {e}", self.path.display());
                    return;
                }
            }
        }
        eprintln!("cleanup: {} stays busy", self.path.display());
    }
}

/// A directory of device nodes, removed on drop.
struct Nodes {
    dir: PathBuf,
}

impl Nodes {
    fn new() -> Res<Nodes> {
        let dir = std::env::temp_dir().join(unique("vcg2-bench-nodes"));
        std::fs::create_dir(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        Ok(Nodes { dir })
    }

    /// The char device node `major:minor`, made the first time.
    fn char_node(&self, major: u64, minor: u64) -> Res<String> {
        use nix::sys::stat::{makedev, mknod, Mode, SFlag};
        let path = self.dir.join(format!("c{major}-{minor}"));
        if path.exists() {
            return Ok(path.to_str().expect("UTF-8").to_string());
        }
        mknod(
            &path,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o600),
            makedev(major, minor),
        )
        .map_err(|e| format!("mknod {}: {e}", path.display()))?;
        Ok(path.to_str().expect("UTF-8").to_string())
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("cleanup: cannot remove {}: {e}", self.dir.display());
        }
    }
}

/// Run-time stats on while held (`BPF_ENABLE_STATS`); off again on drop
/// unless someone else holds them on.
struct Stats(#[allow(dead_code)] OwnedFd);

// ---------------------------------------------------------------- rules

/// A rule as the C API takes it.
#[derive(Debug, Clone, Copy)]
struct Spec {
    ty: u8,
    major: i32,
    minor: i32,
    perms: i32,
}

impl Spec {
    const fn new(ty: u8, major: i32, minor: i32, perms: i32) -> Spec {
        Spec {
            ty,
            major,
            minor,
            perms,
        }
    }

    fn rule(&self) -> Rule {
        Rule::new(self.ty, self.major, self.minor, self.perms).expect("a valid rule")
    }

    /// libvirt's key and value.
    fn libvirt(&self) -> (u64, u32) {
        (
            rules::get_key(self.major, self.minor),
            rules::get_perms(self.perms, self.ty),
        )
    }
}

/// The majors the probes use: no filler rule has them.
const PROBED_MAJORS: [i32; 5] = [1, 136, 200, 240, 241];
/// Majors the filler rules cycle through.
const FILLER_MAJORS: usize = 500;

/// `n` distinct exact rules over 500 majors, two in three char and one in
/// three block, with minors from 1000 up: none covers a probed device.
fn fillers(n: usize) -> Vec<Spec> {
    let majors: Vec<i32> = (2..)
        .filter(|m| !PROBED_MAJORS.contains(m))
        .take(FILLER_MAJORS)
        .collect();
    (0..n)
        .map(|i| {
            let ty = if i % 3 == 2 { b'b' } else { b'c' };
            let minor = 1000 + (i / FILLER_MAJORS) as i32;
            Spec::new(ty, majors[i % FILLER_MAJORS], minor, RW)
        })
        .collect()
}

/// What one measurement probes: the rule it hits (None: no extra rule),
/// the node a child opens read-only, and whether the open must pass.
struct Case {
    name: &'static str,
    rule: Option<Spec>,
    node: (u64, u64),
    allowed: bool,
}

const CASES: [Case; 6] = [
    Case {
        name: "exact hit: `c 1:3 rw`, open c 1:3",
        rule: Some(Spec::new(b'c', 1, 3, RW)),
        node: (1, 3),
        allowed: true,
    },
    Case {
        name: "major wildcard hit: `c 136:* rw`, open c 136:5",
        rule: Some(Spec::new(b'c', 136, -1, RW)),
        node: (136, 5),
        allowed: true,
    },
    Case {
        name: "minor wildcard hit: `c *:77 rw`, open c 200:77",
        rule: Some(Spec::new(b'c', -1, 77, RW)),
        node: (200, 77),
        allowed: true,
    },
    Case {
        name: "all-wildcard hit: `a *:* r`, open c 240:9",
        rule: Some(Spec::new(b'a', -1, -1, READ)),
        node: (240, 9),
        allowed: true,
    },
    Case {
        name: "miss, no wildcard rule: open c 241:1",
        rule: None,
        node: (241, 1),
        allowed: false,
    },
    Case {
        name: "miss, `c 136:* rw` present: open c 241:1",
        rule: Some(Spec::new(b'c', 136, -1, RW)),
        node: (241, 1),
        allowed: false,
    },
];
const EXACT: usize = 0;
const MISS: usize = 4;
const MISS_136: usize = 5;

/// Rule counts for ours and the seed, and for the runc-style program.
const SIZES: [usize; 4] = [10, 200, 1000, 10_000];
const RUNC_SIZES: [usize; 2] = [10, 200];

/// The `n` rules of a case: fillers, then the case's rule (last, so that
/// the runc-style program runs every other block before it).
fn case_rules(case: &Case, n: usize) -> Vec<Spec> {
    let mut rules = fillers(n - usize::from(case.rule.is_some()));
    rules.extend(case.rule);
    rules
}

/// libvirt's default ACL for a QEMU guest (`defaultDeviceACL`, the ptys).
const QEMU_ACL: [Spec; 8] = [
    Spec::new(b'c', 1, 3, RW),
    Spec::new(b'c', 1, 7, RW),
    Spec::new(b'c', 1, 5, RW),
    Spec::new(b'c', 1, 8, RW),
    Spec::new(b'c', 1, 9, RW),
    Spec::new(b'c', 5, 2, RW),
    Spec::new(b'c', 10, 232, RW),
    Spec::new(b'c', 136, -1, RW),
];

// ---------------------------------------------------------------- programs

const R4: u8 = 4;
const R5: u8 = 5;

/// `r0 = 1; exit`.
fn floor_program() -> Vec<Insn> {
    vec![mov64_imm(R0, 1), exit()]
}

/// A program as runc's `devicefilter` compiles a rule list: the context
/// into registers, then one block per rule that jumps to the next block on
/// the first field that does not match and allows at its end; nothing
/// matched denies.
///
/// ```text
///     r2 = *(u32 *)(r1 + 0); w2 &= 0xffff       type
///     r3 = *(u32 *)(r1 + 0); w3 >>= 16          access
///     r4 = *(u32 *)(r1 + 4)                     major
///     r5 = *(u32 *)(r1 + 8)                     minor
/// per rule:
///     if r2 != TYPE goto next                   unless 'a'
///     w1 = w3; w1 &= ACCESS; if r1 != r3 goto next   unless rwm
///     if r4 != MAJOR goto next                  unless *
///     if r5 != MINOR goto next                  unless *
///     w0 = 1; exit
/// next: ...
///     w0 = 0; exit
/// ```
fn runc_program(rules: &[Spec]) -> Vec<Insn> {
    let mut p = vec![
        ldx_mem(BPF_W, R2, R1, 0),
        alu32_imm(BPF_AND, R2, 0xffff),
        ldx_mem(BPF_W, R3, R1, 0),
        alu32_imm(BPF_RSH, R3, 16),
        ldx_mem(BPF_W, R4, R1, 4),
        ldx_mem(BPF_W, R5, R1, 8),
    ];
    for r in rules {
        let start = p.len();
        match r.ty {
            b'b' => p.push(jmp_imm(BPF_JNE, R2, rules::DEV_BLOCK as i32, 0)),
            b'c' => p.push(jmp_imm(BPF_JNE, R2, rules::DEV_CHAR as i32, 0)),
            _ => {}
        }
        if r.perms != RWM {
            p.extend([
                Insn::raw(BPF_ALU | BPF_MOV | BPF_X, R1, R3, 0, 0),
                alu32_imm(BPF_AND, R1, rules::acc_bits(r.perms) as i32),
                jmp_reg(BPF_JNE, R1, R3, 0),
            ]);
        }
        if r.major >= 0 {
            p.push(jmp_imm(BPF_JNE, R4, r.major, 0));
        }
        if r.minor >= 0 {
            p.push(jmp_imm(BPF_JNE, R5, r.minor, 0));
        }
        p.extend([alu32_imm(BPF_MOV, R0, 1), exit()]);
        // Every jump of the block goes to the next block.
        let next = p.len();
        for (i, insn) in p.iter_mut().enumerate().skip(start) {
            if insn.code & 0x07 == BPF_JMP && insn.code & 0xf0 == BPF_JNE {
                insn.off = (next - i - 1) as i16;
            }
        }
    }
    p.extend([alu32_imm(BPF_MOV, R0, 0), exit()]);
    p
}

fn load(insns: &[Insn], name: &str) -> Res<OwnedFd> {
    Ok(sys::prog_load(
        BPF_PROG_TYPE_CGROUP_DEVICE,
        insns,
        "GPL",
        name,
    )?)
}

/// The capacity libvirt's map has after `n` allows: 64, doubled when full.
fn libvirt_max(n: usize) -> u32 {
    let mut max = 64;
    while (max as usize) < n {
        max *= 2;
    }
    max
}

/// What is measured: a program attached to its own cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Seed,
    Ours,
    Runc,
    Floor,
}

/// Attaches the `kind` program for `rules` to `cg` (ours through the
/// library's public API) and returns an fd on what is attached there.
fn set_up(kind: Kind, cg: &mut Cg, rules: &[Spec]) -> Res<OwnedFd> {
    match kind {
        Kind::Ours => {
            let path = cg.library().to_string();
            devices::deny_all(&path)?;
            for r in rules {
                devices::allow(&path, &r.rule())?;
            }
            let count = devices::state(&path)?.count;
            if count != rules.len() {
                return Err(format!(
                    "{path}: the library counts {count} rules, not {}",
                    rules.len()
                )
                .into());
            }
        }
        Kind::Seed => {
            let map = sys::map_create(sys::BPF_MAP_TYPE_HASH, 8, 4, libvirt_max(rules.len()), "")?;
            for r in rules {
                let (key, value) = r.libvirt();
                sys::map_update(map.as_fd(), key, value)?;
            }
            cg.attach(load(&libvirt_program(map.as_raw_fd()), "")?)?;
        }
        Kind::Runc => cg.attach(load(&runc_program(rules), "runc_style")?)?,
        Kind::Floor => cg.attach(load(&floor_program(), "floor")?)?,
    }
    cg.program()
}

// ---------------------------------------------------------------- per check

/// A program, the case whose rules it holds and their count (0 for the
/// floor, which holds none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Slot {
    kind: Kind,
    case: usize,
    size: usize,
}

/// The programs of a round: a floor per case, ours and the seed at every
/// size, runc-style at its sizes.
fn plan() -> Vec<Slot> {
    let mut slots = Vec::new();
    for case in 0..CASES.len() {
        slots.push(Slot {
            kind: Kind::Floor,
            case,
            size: 0,
        });
        for &size in &SIZES {
            for kind in [Kind::Seed, Kind::Ours] {
                slots.push(Slot { kind, case, size });
            }
            if RUNC_SIZES.contains(&size) {
                slots.push(Slot {
                    kind: Kind::Runc,
                    case,
                    size,
                });
            }
        }
    }
    slots
}

/// A slot's program attached to its own cgroup.
struct Target {
    slot: Slot,
    node: String,
    cg: Cg,
    prog: OwnedFd,
}

impl Target {
    /// Whether the case's open must pass this program.
    fn allowed(&self) -> bool {
        CASES[self.slot.case].allowed || self.slot.kind == Kind::Floor
    }
}

/// One measurement of a case: one child opens the case's node `opens`
/// times in the cgroup of each of the case's programs, chunk by chunk in
/// turn; per program, the median over its chunks of the kernel's ns per
/// run.
fn measure(exe: &Path, group: &[&Target], opens: u32) -> Res<Vec<f64>> {
    let first = group.first().ok_or("an empty group")?;
    let what = CASES[first.slot.case].name;
    let mut child = Command::new(exe);
    child.args([CHILD, &first.node, &opens.to_string()]);
    let mut before = Vec::new();
    for t in group {
        let info = sys::prog_info(t.prog.as_fd())?;
        child
            .arg(t.cg.p())
            .arg(info.id.to_string())
            .arg(if t.allowed() { "allow" } else { "deny" });
        before.push(info);
    }
    let out = child.output()?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!("{what}: {}", err.trim()).into());
    }
    let mut chunks = vec![Vec::new(); group.len()];
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let parsed = line.split_once(' ').and_then(|(i, ns)| {
            let i: usize = i.parse().ok()?;
            Some((i, ns.parse::<f64>().ok()?))
        });
        match parsed {
            Some((i, ns)) if i < group.len() => chunks[i].push(ns),
            _ => return Err(format!("{what}: the child printed {line:?}").into()),
        }
    }
    for ((t, before), chunks) in group.iter().zip(&before).zip(&chunks) {
        let after = sys::prog_info(t.prog.as_fd())?;
        let runs = after.run_cnt - before.run_cnt;
        if runs != u64::from(opens) || chunks.len() != CHUNKS as usize {
            return Err(format!(
                "{what}: {:?} at {} rules ran {runs} times for {opens} opens, {} chunks",
                t.slot.kind,
                t.slot.size,
                chunks.len()
            )
            .into());
        }
        if after.run_time_ns == before.run_time_ns {
            return Err(format!("{what}: no run time counted: are the stats on?").into());
        }
    }
    Ok(chunks.iter().map(|c| median(c)).collect())
}

/// Every slot's program on a new cgroup (names carry the round).
fn set_up_targets(parent: &Path, nodes: &Nodes, slots: &[Slot], round: usize) -> Res<Vec<Target>> {
    let mut targets = Vec::new();
    for &slot in slots {
        check_stop()?;
        let case = &CASES[slot.case];
        let node = nodes.char_node(case.node.0, case.node.1)?;
        let name = format!("{:?}-{}-{}-r{round}", slot.kind, slot.case, slot.size);
        let mut cg = Cg::new(parent, &name.to_lowercase())?;
        let prog = set_up(slot.kind, &mut cg, &case_rules(case, slot.size.max(1)))?;
        targets.push(Target {
            slot,
            node,
            cg,
            prog,
        });
    }
    Ok(targets)
}

/// A small deterministic generator for the shuffled order of each round.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, (self.next() % (i as u64 + 1)) as usize);
        }
    }
}

/// Gross ns per check by slot, one per round.
type Samples = HashMap<Slot, Vec<f64>>;

/// Every round sets every program up again (unless `--reuse`): each hash
/// map draws its own hash seed, which decides which keys share a bucket, so
/// one set-up is one draw and a median over rounds is a median over draws
/// too. Then one child per case, the cases in a shuffled order.
fn run_checks(exe: &Path, parent: &Path, nodes: &Nodes, o: &Options) -> Res<Samples> {
    let slots = plan();
    let mut samples = Samples::new();
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut order: Vec<usize> = (0..CASES.len()).collect();
    let mut targets = Vec::new();
    for round in 0..o.rounds {
        let start = Instant::now();
        if round == 0 || !o.reuse {
            // The old round's cgroups go before the new ones come.
            targets.clear();
            targets = set_up_targets(parent, nodes, &slots, round)?;
        }
        let set_up = start.elapsed();
        rng.shuffle(&mut order);
        for &case in &order {
            check_stop()?;
            let group: Vec<&Target> = targets.iter().filter(|t| t.slot.case == case).collect();
            for (t, ns) in group.iter().zip(measure(exe, &group, o.opens)?) {
                samples.entry(t.slot).or_default().push(ns);
            }
        }
        eprintln!(
            "per check: round {}/{}: {} programs set up in {:.1} s, measured in {:.1} s",
            round + 1,
            o.rounds,
            targets.len(),
            set_up.as_secs_f64(),
            (start.elapsed() - set_up).as_secs_f64()
        );
    }
    Ok(samples)
}

// ---------------------------------------------------------------- control plane

/// bpf(2) calls made by this thread during `f`: the total and per command.
fn count_calls<R>(f: impl FnOnce() -> R) -> (R, Calls) {
    let before = hook::calls();
    let r = f();
    let after = hook::calls();
    let mut per = [0u64; hook::COMMANDS];
    for (p, (a, b)) in per.iter_mut().zip(after.iter().zip(before)) {
        *p = a - b;
    }
    (r, Calls(per))
}

#[derive(Debug, Clone, Copy)]
struct Calls([u64; hook::COMMANDS]);

impl Calls {
    fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// "2 (PROG_QUERY 1, MAP_UPDATE_ELEM 1)", per `per` operations.
    fn describe(&self, per: u64) -> String {
        let each = |n: u64| {
            if n % per == 0 {
                format!("{}", n / per)
            } else {
                format!("{:.2}", n as f64 / per as f64)
            }
        };
        let parts: Vec<String> = self
            .0
            .iter()
            .enumerate()
            .filter(|&(_, &n)| n > 0)
            .map(|(cmd, &n)| format!("{} {}", cmd_name(cmd), each(n)))
            .collect();
        format!("{} ({})", each(self.total()), parts.join(", "))
    }
}

fn cmd_name(cmd: usize) -> String {
    use sys::cmd::*;
    let names = [
        (MAP_CREATE, "MAP_CREATE"),
        (MAP_LOOKUP_ELEM, "MAP_LOOKUP_ELEM"),
        (MAP_UPDATE_ELEM, "MAP_UPDATE_ELEM"),
        (MAP_DELETE_ELEM, "MAP_DELETE_ELEM"),
        (MAP_GET_NEXT_KEY, "MAP_GET_NEXT_KEY"),
        (PROG_LOAD, "PROG_LOAD"),
        (PROG_ATTACH, "PROG_ATTACH"),
        (PROG_DETACH, "PROG_DETACH"),
        (PROG_GET_FD_BY_ID, "PROG_GET_FD_BY_ID"),
        (MAP_GET_FD_BY_ID, "MAP_GET_FD_BY_ID"),
        (OBJ_GET_INFO_BY_FD, "OBJ_GET_INFO_BY_FD"),
        (PROG_QUERY, "PROG_QUERY"),
        (MAP_LOOKUP_BATCH, "MAP_LOOKUP_BATCH"),
        (MAP_UPDATE_BATCH, "MAP_UPDATE_BATCH"),
    ];
    names
        .iter()
        .find(|&&(c, _)| c as usize == cmd)
        .map_or(format!("cmd {cmd}"), |&(_, n)| n.to_string())
}

/// bpf(2) calls per operation on a held program in steady state.
struct Steady {
    allow_new: Calls,
    allow_again: Calls,
    deny_some: Calls,
    deny_all_perms: Calls,
    steps: u64,
}

/// Warm-up rules, then `STEPS` of each operation, the map never full and
/// never grown while counting.
fn steady_calls(parent: &Path) -> Res<Steady> {
    const WARM: usize = 24;
    const STEPS: usize = 24;
    let mut cg = Cg::new(parent, "cp-steady")?;
    let path = cg.library().to_string();
    let rules = fillers(WARM + STEPS);
    devices::deny_all(&path)?;
    for r in &rules[..WARM] {
        devices::allow(&path, &r.rule())?;
    }
    let max = devices::state(&path)?.max;
    let new = &rules[WARM..];
    let each = |perms: Option<i32>, op: fn(&str, &Rule) -> vircgroup_v2_devices::Result<()>| {
        count_calls(|| -> Res<()> {
            for r in new {
                let spec = Spec {
                    perms: perms.unwrap_or(r.perms),
                    ..*r
                };
                op(&path, &spec.rule())?;
            }
            Ok(())
        })
    };
    let (r1, allow_new) = each(None, devices::allow);
    let (r2, allow_again) = each(None, devices::allow);
    let (r3, deny_some) = each(Some(WRITE), devices::deny);
    let (r4, deny_all_perms) = each(Some(RW), devices::deny);
    r1.and(r2).and(r3).and(r4)?;
    let state = devices::state(&path)?;
    if state.max != max || state.count != WARM {
        return Err(format!(
            "steady state: the map went from {max} to {} entries, {} rules left (expected {WARM})",
            state.max, state.count
        )
        .into());
    }
    Ok(Steady {
        allow_new,
        allow_again,
        deny_some,
        deny_all_perms,
        steps: STEPS as u64,
    })
}

/// Times (s) per round of 10,000 allows on a fresh cgroup and of 10,000
/// updates into a map already large enough, and the calls of the last.
struct Growth {
    ours: Vec<f64>,
    floor: Vec<f64>,
    ours_calls: Calls,
    floor_calls: Calls,
}

const GROWTH_RULES: usize = 10_000;

fn growth(parent: &Path, o: &Options) -> Res<Growth> {
    let specs = fillers(GROWTH_RULES);
    let rules: Vec<Rule> = specs.iter().map(Spec::rule).collect();
    let entries: Vec<(u64, u32)> = specs.iter().map(Spec::libvirt).collect();
    let mut g = Growth {
        ours: Vec::new(),
        floor: Vec::new(),
        ours_calls: Calls([0; hook::COMMANDS]),
        floor_calls: Calls([0; hook::COMMANDS]),
    };
    for round in 0..o.cp_rounds {
        for side in if round % 2 == 0 { [0, 1] } else { [1, 0] } {
            check_stop()?;
            if side == 0 {
                let mut cg = Cg::new(parent, &format!("cp-allows-{round}"))?;
                let path = cg.library().to_string();
                let start = Instant::now();
                let (r, calls) =
                    count_calls(|| rules.iter().try_for_each(|r| devices::allow(&path, r)));
                let t = start.elapsed().as_secs_f64();
                r?;
                let count = devices::state(&path)?.count;
                if count != GROWTH_RULES {
                    return Err(format!("{path}: {count} rules after {GROWTH_RULES} allows").into());
                }
                g.ours.push(t);
                g.ours_calls = calls;
            } else {
                let map = sys::map_create(sys::BPF_MAP_TYPE_HASH, 8, 4, GROWTH_RULES as u32, "")?;
                let start = Instant::now();
                let (r, calls) = count_calls(|| {
                    entries
                        .iter()
                        .try_for_each(|&(k, v)| sys::map_update(map.as_fd(), k, v))
                });
                let t = start.elapsed().as_secs_f64();
                r?;
                g.floor.push(t);
                g.floor_calls = calls;
            }
        }
        eprintln!(
            "control plane: 10,000 allows, round {}/{}",
            round + 1,
            o.cp_rounds
        );
    }
    Ok(g)
}

/// libvirt's C sequence for a QEMU start on a fresh cgroup
/// (`virCgroupV2DevicesCreateProg` and `AttachProg`, then
/// `virCgroupV2AllowDevice` per rule): a 64-entry map, the seed's program
/// loaded and attached, then a lookup and an update per allow. (libvirt's
/// detect query on the fresh cgroup is left out.)
fn libvirt_start(cg: &mut Cg) -> Res<()> {
    let map = sys::map_create(sys::BPF_MAP_TYPE_HASH, 8, 4, 64, "")?;
    let prog = load(&libvirt_program(map.as_raw_fd()), "")?;
    let dir = File::open(&cg.path)?;
    sys::prog_attach(dir.as_fd(), prog.as_fd(), BPF_CGROUP_DEVICE, 0, None)?;
    cg.attached.push(prog);
    for r in &QEMU_ACL {
        let (key, value) = r.libvirt();
        let _ = sys::map_lookup(map.as_fd(), key)?;
        sys::map_update(map.as_fd(), key, value)?;
    }
    cg.keep.push(map);
    Ok(())
}

/// QEMU's start through the library: deny all, then the default ACL.
fn our_start(cg: &mut Cg) -> Res<()> {
    let path = cg.library().to_string();
    devices::deny_all(&path)?;
    for r in &QEMU_ACL {
        devices::allow(&path, &r.rule())?;
    }
    Ok(())
}

/// Times (s) of `starts` QEMU starts per side and round, each on a fresh
/// cgroup made before the clock starts; the calls of one start.
struct Starts {
    ours: Vec<f64>,
    libvirt: Vec<f64>,
    ours_calls: Calls,
    libvirt_calls: Calls,
}

fn starts(parent: &Path, o: &Options) -> Res<Starts> {
    let mut s = Starts {
        ours: Vec::new(),
        libvirt: Vec::new(),
        ours_calls: Calls([0; hook::COMMANDS]),
        libvirt_calls: Calls([0; hook::COMMANDS]),
    };
    for round in 0..o.cp_rounds {
        check_stop()?;
        let mut cgs = Vec::new();
        for i in 0..o.starts {
            cgs.push([
                Cg::new(parent, &format!("cp-qemu-ours-{round}-{i}"))?,
                Cg::new(parent, &format!("cp-qemu-libvirt-{round}-{i}"))?,
            ]);
        }
        let (mut ours, mut libvirt) = (0.0, 0.0);
        for (i, [a, b]) in cgs.iter_mut().enumerate() {
            for side in if i % 2 == 0 { [0, 1] } else { [1, 0] } {
                let start = Instant::now();
                let (r, calls) = if side == 0 {
                    count_calls(|| our_start(a))
                } else {
                    count_calls(|| libvirt_start(b))
                };
                let t = start.elapsed().as_secs_f64();
                r?;
                if side == 0 {
                    (ours, s.ours_calls) = (ours + t, calls);
                } else {
                    (libvirt, s.libvirt_calls) = (libvirt + t, calls);
                }
            }
        }
        s.ours.push(ours);
        s.libvirt.push(libvirt);
        eprintln!(
            "control plane: QEMU starts, round {}/{}",
            round + 1,
            o.cp_rounds
        );
    }
    Ok(s)
}

// ---------------------------------------------------------------- report

fn median(v: &[f64]) -> f64 {
    quantile(v, 0.5)
}

/// Linear-interpolated quantile.
fn quantile(v: &[f64], q: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return f64::NAN;
    }
    let pos = q * (s.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    s[lo] + (s[hi] - s[lo]) * (pos - lo as f64)
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn machine() -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or("?".into(), |s| s.trim().to_string());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or("?".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("Linux {kernel}, {cpu}, {cpus} CPUs (nproc)")
}

fn commit() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(env!("CARGO_MANIFEST_DIR"))
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(head) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            format!(
                "{head}{}",
                if dirty {
                    " (with uncommitted changes)"
                } else {
                    ""
                }
            )
        }
        None => "?".into(),
    }
}

/// Net ns per check: gross − the floor measured by the same child.
struct Net<'a> {
    samples: &'a Samples,
}

impl Net<'_> {
    /// The gross ns per check of a program, one per round.
    fn gross(&self, kind: Kind, case: usize, size: usize) -> Option<&[f64]> {
        let size = if kind == Kind::Floor { 0 } else { size };
        self.samples
            .get(&Slot { kind, case, size })
            .map(Vec::as_slice)
    }

    /// The net ns per check of a program, one per round.
    fn nets(&self, kind: Kind, case: usize, size: usize) -> Option<Vec<f64>> {
        let gross = self.gross(kind, case, size)?;
        let floor = self.gross(Kind::Floor, case, 0)?;
        Some(gross.iter().zip(floor).map(|(g, f)| g - f).collect())
    }

    /// Median net ns per check over rounds.
    fn net(&self, kind: Kind, case: usize, size: usize) -> Option<f64> {
        self.nets(kind, case, size).map(|n| median(&n))
    }

    /// Median over rounds of the net cost of `a` over that of `b`, both
    /// measured by the same child.
    fn ratio(&self, a: (Kind, usize), b: (Kind, usize), case: usize) -> Option<f64> {
        let (a, b) = (self.nets(a.0, case, a.1)?, self.nets(b.0, case, b.1)?);
        let ratios: Vec<f64> = a.iter().zip(&b).map(|(a, b)| a / b).collect();
        Some(median(&ratios))
    }
}

fn ns(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.1}"))
}

fn x(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.2}"))
}

fn report(
    o: &Options,
    samples: &Samples,
    steady: &Steady,
    g: &Growth,
    s: &Starts,
    took: Duration,
) -> String {
    let mut out = String::new();
    let w = &mut out;
    let net = Net { samples };
    let _ = writeln!(w, "### Run\n");
    let mut command = "cargo bench --bench devices".to_string();
    if !o.given.is_empty() {
        command = format!("{command} -- {}", o.given.join(" "));
    }
    let _ = writeln!(w, "- command: `{command}` (as root)");
    let _ = writeln!(w, "- machine: {}", machine());
    let _ = writeln!(w, "- commit: {}", commit());
    let _ = writeln!(
        w,
        "- per check: {} rounds, every program set up again each round{}; in a round, for \
         each case in a shuffled order, one child opens the case's node {} times in the \
         cgroup of each of the case's programs (the floor, the seed and ours at every size, \
         runc-style at its sizes), moving between them every {} opens; ns per check = \
         Δrun_time_ns / Δrun_cnt (`BPF_ENABLE_STATS`), the median of the program's {CHUNKS} \
         chunks; net = gross − the floor measured by the same child; ns: medians over \
         rounds; ratios (including flatness): medians over rounds of the ratio of two nets \
         measured by the same child",
        o.rounds,
        if o.reuse { " (not: --reuse)" } else { "" },
        o.opens,
        o.opens / CHUNKS
    );
    let _ = writeln!(
        w,
        "- control plane: {} rounds, the two sides alternating; {} QEMU starts per side and round",
        o.cp_rounds, o.starts
    );
    let _ = writeln!(w, "- wall time of the run: {:.0} s", took.as_secs_f64());

    let floors: Vec<f64> = samples
        .iter()
        .filter(|(slot, _)| slot.kind == Kind::Floor)
        .map(|(_, g)| median(g))
        .collect();
    let _ = writeln!(
        w,
        "\n### Per-check cost (net ns: gross − floor)\n\n\
         The floor (`r0 = 1; exit`) costs {:.1}–{:.1} ns gross per check (medians by case).\n",
        floors.iter().copied().fold(f64::INFINITY, f64::min),
        floors.iter().copied().fold(f64::NEG_INFINITY, f64::max)
    );
    let _ = writeln!(
        w,
        "| case | rules | seed | ours | ours/seed | runc-style | runc/ours |\n\
         | --- | --: | --: | --: | --: | --: | --: |"
    );
    for (c, case) in CASES.iter().enumerate() {
        for (i, &n) in SIZES.iter().enumerate() {
            let seed = net.net(Kind::Seed, c, n);
            let ours = net.net(Kind::Ours, c, n);
            let runc = net.net(Kind::Runc, c, n);
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {} | {} | {} |",
                if i == 0 { case.name } else { "" },
                thousands(n),
                ns(seed),
                ns(ours),
                x(net.ratio((Kind::Ours, n), (Kind::Seed, n), c)),
                ns(runc),
                x(net.ratio((Kind::Runc, n), (Kind::Ours, n), c)),
            );
        }
    }

    let _ = writeln!(
        w,
        "\n<details><summary>Gross ns per check: median [p25–p75] over rounds</summary>\n\n\
         | case | rules | floor | seed | ours | runc-style |\n\
         | --- | --: | --: | --: | --: | --: |"
    );
    let cell = |t: Option<&[f64]>| {
        t.map_or("–".into(), |t| {
            format!(
                "{:.1} [{:.1}–{:.1}]",
                median(t),
                quantile(t, 0.25),
                quantile(t, 0.75)
            )
        })
    };
    for (c, case) in CASES.iter().enumerate() {
        for (i, &n) in SIZES.iter().enumerate() {
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {} | {} |",
                if i == 0 { case.name } else { "" },
                thousands(n),
                if i == 0 {
                    cell(net.gross(Kind::Floor, c, 0))
                } else {
                    String::new()
                },
                cell(net.gross(Kind::Seed, c, n)),
                cell(net.gross(Kind::Ours, c, n)),
                cell(net.gross(Kind::Runc, c, n)),
            );
        }
    }
    let _ = writeln!(w, "\n</details>");

    let per = steady.steps;
    let _ = writeln!(
        w,
        "\n### Control plane\n\n\
         bpf(2) calls per operation on a held program, map not full (counted by `sys::hook`, \
         {per} of each after {per} warm-up allows):\n\n\
         | operation | ours | libvirt's C code |\n\
         | --- | --- | --- |"
    );
    let ops = [
        (
            "allow a new exact rule",
            &steady.allow_new,
            "2 (lookup, update)",
        ),
        (
            "allow a rule already held",
            &steady.allow_again,
            "2 (lookup, update)",
        ),
        (
            "deny `w` of an `rw` rule",
            &steady.deny_some,
            "2 (lookup, update)",
        ),
        (
            "deny `rw` of an `rw` rule (removed)",
            &steady.deny_all_perms,
            "2 (lookup, delete)",
        ),
    ];
    for (what, calls, libvirt) in ops {
        let _ = writeln!(w, "| {what} | {} | {libvirt} |", calls.describe(per));
    }
    let grow = median(&g.ours) / median(&g.floor);
    let start = median(&s.ours) / median(&s.libvirt);
    let _ = writeln!(
        w,
        "\n| sequence | reference | time ours/reference | bpf(2) calls: ours | reference |\n\
         | --- | --- | --: | --- | --- |"
    );
    let _ = writeln!(
        w,
        "| {} allows on a fresh cgroup (first allow creates, map growth included) | {} \
         `BPF_MAP_UPDATE_ELEM` into a map of {} | {grow:.2} | {} | {} |",
        thousands(GROWTH_RULES),
        thousands(GROWTH_RULES),
        thousands(GROWTH_RULES),
        g.ours_calls.describe(1),
        g.floor_calls.describe(1)
    );
    let _ = writeln!(
        w,
        "| QEMU start: `deny_all`, then `c 1:3`, `1:7`, `1:5`, `1:8`, `1:9`, `5:2`, `10:232`, \
         `136:*` `rw` | libvirt's C sequence replayed: map of 64, seed program loaded and \
         attached, lookup + update per allow | {start:.2} | {} | {} |",
        s.ours_calls.describe(1),
        s.libvirt_calls.describe(1)
    );
    let _ = writeln!(
        w,
        "\nFor scale only (medians of this run): {} allows {:.1} ms, the floor {:.1} ms; one \
         QEMU start {:.2} ms, libvirt's replay {:.2} ms.",
        thousands(GROWTH_RULES),
        median(&g.ours) * 1e3,
        median(&g.floor) * 1e3,
        median(&s.ours) * 1e3 / o.starts as f64,
        median(&s.libvirt) * 1e3 / o.starts as f64
    );

    // Targets: each judged on its worst measurement; a missing number fails.
    let ours_vs_seed = |case: usize| -> Vec<(f64, usize)> {
        SIZES
            .iter()
            .map(|&n| {
                let r = net.ratio((Kind::Ours, n), (Kind::Seed, n), case);
                (r.unwrap_or(f64::NAN), n)
            })
            .collect()
    };
    let (exact, exact_n) = worst(ours_vs_seed(EXACT), |r| r);
    let (miss, miss_n) = worst(ours_vs_seed(MISS), |r| r);
    let (miss136, miss136_n) = worst(ours_vs_seed(MISS_136), |r| r);
    let mut flat = Vec::new();
    for c in 0..CASES.len() {
        for &n in &SIZES[1..] {
            let r = net.ratio((Kind::Ours, n), (Kind::Ours, SIZES[0]), c);
            flat.push((r.map_or(f64::NAN, |r| r - 1.0), (c, n)));
        }
    }
    let (flat, (flat_c, flat_n)) = worst(flat, f64::abs);
    let runc: Vec<(f64, usize)> = (0..CASES.len())
        .map(|c| {
            let r = net.ratio((Kind::Runc, 200), (Kind::Ours, 200), c);
            (r.unwrap_or(f64::NAN), c)
        })
        .collect();
    let (runc, runc_c) = worst(runc, |r| -r);
    let (calls, calls_op) = worst(
        ops.iter()
            .map(|(what, calls, _)| (calls.total() as f64 / per as f64, *what))
            .collect(),
        |c| c,
    );
    let met = |ok: bool| if ok { "MET" } else { "NOT MET" };
    let _ = writeln!(
        w,
        "\n### Targets (ratios from this run, each at its worst)\n\n\
         | target | measured | |\n\
         | --- | --- | --- |"
    );
    let _ = writeln!(
        w,
        "| exact hit no slower than the seed: ours/seed ≤ 1 | {exact:.2} at {} rules | {} |",
        thousands(exact_n),
        met(exact <= 1.0)
    );
    let _ = writeln!(
        w,
        "| miss, no wildcard rule: ours/seed ≤ 0.5 | {miss:.2} at {} rules | {} |",
        thousands(miss_n),
        met(miss <= 0.5)
    );
    let _ = writeln!(
        w,
        "| miss, `c 136:*` present: ours/seed ≤ 0.65 | {miss136:.2} at {} rules | {} |",
        thousands(miss136_n),
        met(miss136 <= 0.65)
    );
    let _ = writeln!(
        w,
        "| ours flat from 10 to 10,000 rules: net within ±10% of its 10-rule cost, every case \
         | {:+.1}% at {} rules, {} | {} |",
        flat * 100.0,
        thousands(flat_n),
        CASES[flat_c].name,
        met(flat.abs() <= 0.10)
    );
    let _ = writeln!(
        w,
        "| runc-style at 200 rules ≥ 5× ours, every case | {runc:.1}× for {} | {} |",
        CASES[runc_c].name,
        met(runc >= 5.0)
    );
    let _ = writeln!(
        w,
        "| one bpf(2) call per allow or deny in steady state | {calls:.2} (worst: {calls_op}) | {} |",
        met(calls <= 1.0)
    );
    let _ = writeln!(
        w,
        "| {} allows within 1.5× the floor | {grow:.2}× | {} |",
        thousands(GROWTH_RULES),
        met(grow <= 1.5)
    );
    out
}

/// The worst of `items` by `badness` (the largest), a NaN (a missing
/// number) worst of all, so that it cannot pass.
fn worst<L: Copy>(items: Vec<(f64, L)>, badness: impl Fn(f64) -> f64) -> (f64, L) {
    let score = |v: f64| {
        if v.is_nan() {
            f64::INFINITY
        } else {
            badness(v)
        }
    };
    items
        .into_iter()
        .max_by(|a, b| score(a.0).total_cmp(&score(b.0)))
        .expect("at least one measurement")
}

// ---------------------------------------------------------------- main

fn run(o: &Options) -> Res<String> {
    let began = Instant::now();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("run as root: the benchmark makes cgroups and BPF programs".into());
    }
    let mount = cgroup2_mount().ok_or("no cgroup2 filesystem is mounted")?;
    let exe = std::env::current_exe()?;
    catch_signals();
    // Declared first, dropped last: everything else lives inside.
    let parent = Cg::new(&mount, &unique("vcg2-bench"))?;
    let nodes = Nodes::new()?;
    eprintln!("scratch cgroups under {}", parent.path.display());
    let samples = {
        let _stats = Stats(sys::enable_stats()?);
        run_checks(&exe, &parent.path, &nodes, o)?
    };
    let steady = steady_calls(&parent.path)?;
    let g = growth(&parent.path, o)?;
    let s = starts(&parent.path, o)?;
    Ok(report(o, &samples, &steady, &g, &s, began.elapsed()))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(CHILD) {
        return child(&args[1..]);
    }
    let o = match options(&args) {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(&o) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("devices benchmark: {e}");
            ExitCode::FAILURE
        }
    }
}
