//! The markdown report: the run, the tables and the targets.

use crate::cases::*;
use crate::child::*;
use crate::control_plane::*;
use crate::options::*;
use crate::per_check::*;
use crate::programs::*;
use crate::stats::*;
use std::fmt::Write as _;
use std::process::Command;
use std::time::Duration;

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

pub(crate) fn report(
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
