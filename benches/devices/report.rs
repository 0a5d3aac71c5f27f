// SPDX-License-Identifier: LGPL-2.1-or-later
//! The markdown report: the run, the tables and the targets.

use crate::cases::*;
use crate::child::CHUNKS;
use crate::control_plane::*;
use crate::options::*;
use crate::per_check::*;
use crate::programs::*;
use crate::stats::*;
use crate::syscalls::{self, Counts, OPS, STEPS, WARM};
use crate::targets::*;
use std::fmt::Write as _;
use std::process::Command;
use std::time::Duration;

pub(crate) fn thousands(n: usize) -> String {
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

/// What the run was: the command, the machine, the commit, the method.
pub(crate) struct RunInfo {
    pub(crate) took: Duration,
    pub(crate) strace: String,
    /// `/proc/loadavg`'s first three fields when the run began.
    pub(crate) load_before: String,
}

/// The load averages (1, 5, 15 minutes): how shared the machine was.
pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or("?".into(), |s| {
        s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    })
}

fn ns(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.1}"))
}

pub(crate) fn report(
    o: &Options,
    samples: &(Samples, PairSamples),
    steady: &Counts,
    g: &Growth,
    s: &Starts,
    info: &RunInfo,
) -> String {
    let mut out = String::new();
    let w = &mut out;
    let net = Net {
        solo: &samples.0,
        pairs: &samples.1,
    };
    run_section(w, o, info);
    let targets = targets_section(w, &net, s, steady);
    per_check_section(w, &net);
    same_opens_section(w, &net);
    gross_section(w, &net);
    syscalls_section(w, steady);
    sequences_section(w, g, s);
    start_parts_section(w, g, s);
    every_check_section(w, &targets);
    out
}

/// A paired ratio formatted by `f`, or a dash where there is none.
fn or_dash(p: Option<Paired>, f: fn(&Paired) -> String) -> String {
    p.map_or("–".into(), |p| f(&p))
}

/// How the run was made: command, machine, load, commit, method.
fn run_section(w: &mut String, o: &Options, info: &RunInfo) {
    let _ = writeln!(w, "### Run\n");
    let mut command = "cargo bench --features testing --bench devices".to_string();
    if !o.given.is_empty() {
        command = format!("{command} -- {}", o.given.join(" "));
    }
    let _ = writeln!(w, "- command: `{command}` (as root)");
    let _ = writeln!(w, "- machine: {}", machine());
    let _ = writeln!(
        w,
        "- load average (1, 5, 15 min): {} at the start, {} at the end",
        info.load_before,
        load_average()
    );
    let _ = writeln!(w, "- commit: {}", commit());
    let _ = writeln!(
        w,
        "- per check: {} rounds, every program with a map set up again each round{}; in a \
         round, for each case in a shuffled order, one child opens the case's node {} times \
         in the cgroup of each of the case's programs (the floor, the seed and ours at every \
         size, runc-style at {}), moving between them every {} opens; ns per check = \
         Δrun_time_ns / Δrun_cnt (`BPF_ENABLE_STATS`), the median of the program's {CHUNKS} \
         chunks; net = gross − the floor measured by the same child; ns: medians over rounds; \
         then the pairs on the same opens: both programs on one cgroup, in each order, \
         measured by one more child",
        o.rounds,
        if o.reuse { " (not: --reuse)" } else { "" },
        o.opens,
        RUNC_SIZES.map(thousands).join(", "),
        o.opens / CHUNKS
    );
    let _ = writeln!(
        w,
        "- ratios: the median over rounds of a/b, a and b net ns measured by the same child, \
         with the 95% CI of that median (order statistics: a sign test) in brackets"
    );
    let _ = writeln!(
        w,
        "- control plane: {} rounds, the two sides alternating; {} QEMU starts per side and \
         round, each timed and paired with the other side's next; syscalls per operation \
         counted by {} (`strace -f`), {STEPS} of each after a warm-up pass",
        o.cp_rounds, o.starts, info.strace
    );
    let _ = writeln!(
        w,
        "- wall time of the run: {:.0} s",
        info.took.as_secs_f64()
    );
}

/// The targets and their verdicts (worst case of each).
fn targets_section(w: &mut String, net: &Net, s: &Starts, steady: &Counts) -> Vec<Target> {
    let _ = writeln!(
        w,
        "\n### Targets (issue 15)\n\n\
         MET: the 95% CI is on the right side of the line; NOT MET: on the wrong side; \
         UNCLEAR: the CI crosses the line (this run cannot tell). Counts have no CI.\n\n\
         | target | worst case | measured [95% CI] | verdict |\n\
         | --- | --- | --- | --- |"
    );
    let targets = targets(net, s, steady);
    for t in &targets {
        let (place, measured) = t.worst().map_or(("–".into(), "–".into()), |c| {
            (c.place.clone(), c.measured.clone())
        });
        let _ = writeln!(
            w,
            "| {} | {place} | {measured} | {} |",
            t.name,
            t.verdict().text()
        );
    }
    targets
}

/// Each program alone on its cgroup: net ns per check and the ratios.
fn per_check_section(w: &mut String, net: &Net) {
    let floors: Vec<f64> = net
        .solo
        .iter()
        .filter(|(slot, _)| slot.kind == Kind::Floor)
        .map(|(_, g)| median(g))
        .collect();
    let _ = writeln!(
        w,
        "\n### Per-check cost (net ns: gross − floor)\n\n\
         Each program alone on its cgroup. The floor (`r0 = 1; exit`) costs {:.1}–{:.1} ns \
         gross per check (medians by case). \"ours vs 10\": ours at that size against ours \
         at 10 rules.\n",
        floors.iter().copied().fold(f64::INFINITY, f64::min),
        floors.iter().copied().fold(f64::NEG_INFINITY, f64::max)
    );
    let _ = writeln!(
        w,
        "| case | rules | seed | ours | runc-style | ours/seed | ours/runc | ours vs 10 |\n\
         | --- | --: | --: | --: | --: | --: | --: | --: |"
    );
    for (c, case) in CASES.iter().enumerate() {
        for (i, &n) in SIZES.iter().enumerate() {
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                if i == 0 { case.name } else { "" },
                thousands(n),
                ns(net.net(Kind::Seed, c, n)),
                ns(net.net(Kind::Ours, c, n)),
                ns(net.net(Kind::Runc, c, n)),
                or_dash(
                    net.paired(c, (Kind::Ours, n), (Kind::Seed, n), 0.5),
                    ratio_ci
                ),
                or_dash(
                    net.paired(c, (Kind::Ours, n), (Kind::Runc, n), 1.0),
                    ratio_ci
                ),
                if i == 0 {
                    String::new()
                } else {
                    or_dash(
                        net.paired(c, (Kind::Ours, n), (Kind::Ours, SIZES[0]), 1.0),
                        percent_ci,
                    )
                },
            );
        }
    }
}

/// The pairs measured on the same opens.
fn same_opens_section(w: &mut String, net: &Net) {
    let _ = writeln!(
        w,
        "\n### On the same opens\n\n\
         Both programs of a pair attached to one cgroup (`BPF_F_ALLOW_MULTI`, once in each \
         order), so every open runs both and the kernel times each: a − b is the median over \
         chunks of each chunk's difference of gross ns, averaged over the two orders, and \
         its median over rounds [95% CI]; a/b = 1 + (a − b)/b, with b the median net cost \
         alone (above). The targets on a difference of a few ns (flat, ours against \
         runc-style at 10 rules) take these; the ratios alone, above, are for scale. The \
         control: ours at 10 rules against the same rules set up again on another cgroup, \
         which must come out at 0.\n\n\
         | case | ours at {to} − ours at {from}: ns | ours at {to} vs {from} | ours − runc-style \
         at 10: ns | ours/runc-style at 10 | control: ns | control |\n\
         | --- | --: | --: | --: | --: | --: | --: |",
        to = thousands(FLAT_TO),
        from = thousands(FLAT_FROM),
    );
    let diff_ci = |pair: usize, c: usize| {
        net.pairs.get(&(pair, c)).map_or("–".into(), |d| {
            let (lo, hi) = median_ci(d);
            format!("{:+.2} [{lo:+.2}…{hi:+.2}]", median(d))
        })
    };
    for (c, case) in CASES.iter().enumerate() {
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {} | {} | {} |",
            case.name,
            diff_ci(FLAT_PAIR, c),
            or_dash(net.same_opens(FLAT_PAIR, c, 1.0), percent_ci),
            diff_ci(RUNC_PAIR, c),
            or_dash(net.same_opens(RUNC_PAIR, c, 1.0), ratio_ci),
            diff_ci(CONTROL_PAIR, c),
            or_dash(net.same_opens(CONTROL_PAIR, c, 1.0), percent_ci),
        );
    }
}

/// Gross ns per check, with quartiles.
fn gross_section(w: &mut String, net: &Net) {
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
}

/// System calls per operation, ours against libvirt's C code.
fn syscalls_section(w: &mut String, steady: &Counts) {
    let _ = writeln!(
        w,
        "\n### Control plane\n\n\
         System calls of every kind per operation on a held program, map not full, in a \
         child under `strace -f` ({STEPS} of each, after {WARM} warm-up rules and a warm-up \
         pass); bpf(2) by command:\n\n\
         | operation | syscalls per operation: ours | libvirt's C code (bpf(2) only) |\n\
         | --- | --- | --- |"
    );
    for (op, counts) in OPS.iter().zip(steady) {
        let _ = writeln!(
            w,
            "| {} | {} | {} |",
            op.name,
            syscalls::describe(counts),
            op.libvirt
        );
    }
}

/// A QEMU start and 10,000 allows, timed and counted against references.
fn sequences_section(w: &mut String, g: &Growth, s: &Starts) {
    let grow = paired(&g.ours, &g.floor, 1.0);
    let start = paired(&s.ours.total, &s.libvirt.total, 1.0);
    let _ = writeln!(
        w,
        "\n| sequence | reference | time ours/reference [95% CI] | bpf(2) calls: ours | reference |\n\
         | --- | --- | --: | --- | --- |"
    );
    let _ = writeln!(
        w,
        "| QEMU start: `deny_all`, then `c 1:3`, `1:7`, `1:5`, `1:8`, `1:9`, `5:2`, `10:232`, \
         `136:*` `rw` | libvirt's C sequence replayed: map of 64, seed program loaded and \
         attached, lookup + update per allow | {} | {} | {} |",
        ratio_ci(&start),
        s.ours_calls.describe(1),
        s.libvirt_calls.describe(1)
    );
    let _ = writeln!(
        w,
        "| {} allows on a fresh cgroup (first allow creates, map growth included) | {} \
         `BPF_MAP_UPDATE_ELEM` into a map of {} | {} | {} | {} |",
        thousands(GROWTH_RULES),
        thousands(GROWTH_RULES),
        thousands(GROWTH_RULES),
        ratio_ci(&grow),
        g.ours_calls.describe(1),
        g.floor_calls.describe(1)
    );
}

/// Where a QEMU start's time goes, and the absolute times for scale.
fn start_parts_section(w: &mut String, g: &Growth, s: &Starts) {
    let rest = |side: &Side| -> Vec<f64> {
        side.total
            .iter()
            .zip(&side.first)
            .map(|(t, f)| t - f)
            .collect()
    };
    let parts = [
        (
            "the first call: `deny_all` / the map created, the program loaded and attached",
            (&s.ours.first, &s.libvirt.first),
        ),
        (
            "the 8 allows / a lookup and an update each",
            (&rest(&s.ours), &rest(&s.libvirt)),
        ),
        (
            "a program load alone (verifier, JIT) for a new empty map, next to each start",
            (&s.ours.load, &s.libvirt.load),
        ),
    ];
    let _ = writeln!(
        w,
        "\nWhere a QEMU start's time goes, each part timed in every start and paired as \
         the starts are (µs, medians):\n\n\
         | part: ours / libvirt's replay | ours | replay | ours/replay [95% CI] |\n\
         | --- | --: | --: | --: |"
    );
    for (name, (a, b)) in parts {
        let _ = writeln!(
            w,
            "| {name} | {:.1} | {:.1} | {} |",
            median(a) * 1e6,
            median(b) * 1e6,
            ratio_ci(&paired(a, b, 1.0))
        );
    }
    let _ = writeln!(
        w,
        "\nFor scale only (medians of this run): one QEMU start {:.2} ms, libvirt's replay \
         {:.2} ms; {} allows {:.1} ms, the reference {:.1} ms.",
        median(&s.ours.total) * 1e3,
        median(&s.libvirt.total) * 1e3,
        thousands(GROWTH_RULES),
        median(&g.ours) * 1e3,
        median(&g.floor) * 1e3
    );
}

/// Every check of every target.
fn every_check_section(w: &mut String, targets: &[Target]) {
    let _ = writeln!(
        w,
        "\n<details><summary>Every check of the targets</summary>\n\n\
         | target | case | measured [95% CI] | verdict |\n\
         | --- | --- | --- | --- |"
    );
    for t in targets {
        for (i, c) in t.checks.iter().enumerate() {
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} |",
                if i == 0 { t.name } else { "" },
                c.place,
                c.measured,
                c.verdict.text()
            );
        }
    }
    let _ = writeln!(w, "\n</details>");
}
