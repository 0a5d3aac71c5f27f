// SPDX-License-Identifier: LGPL-2.1-or-later
//! Per-check cost: every program set up on its own cgroup each round, each
//! case measured by one child that goes from one program's cgroup to the
//! next, chunk by chunk.

use crate::cases::*;
use crate::cgroups::*;
use crate::child::*;
use crate::options::*;
use crate::programs::*;
use crate::stats::*;
use crate::Res;
use std::collections::HashMap;
use std::io::Write as _;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::process::Command;
use std::time::Instant;
use vircgroup_v2_devices::sys;

/// A program, the case whose rules it holds and their count (0 for the
/// floor, which holds none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Slot {
    pub(crate) kind: Kind,
    pub(crate) case: usize,
    pub(crate) size: usize,
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
/// turn; per program, the kernel's ns per run of each chunk.
fn measure(exe: &Path, group: &[&Target], opens: u32) -> Res<Vec<Vec<f64>>> {
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
    Ok(chunks)
}

/// Every slot's program on a new cgroup (names carry the round); `fixed`
/// keeps the programs that need no new set-up.
fn set_up_targets(
    parent: &Path,
    nodes: &Nodes,
    slots: &[Slot],
    round: usize,
    fixed: &mut HashMap<Slot, Option<OwnedFd>>,
) -> Res<Vec<Target>> {
    let mut targets = Vec::new();
    for &slot in slots {
        check_stop()?;
        let case = &CASES[slot.case];
        let node = nodes.char_node(case.node.0, case.node.1)?;
        let name = format!("{:?}-{}-{}-r{round}", slot.kind, slot.case, slot.size);
        let mut cg = Cg::new(parent, &name.to_lowercase())?;
        let rules = case_rules(case, slot.size.max(1));
        let prog = set_up(slot.kind, &mut cg, &rules, fixed.entry(slot).or_default())?;
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
pub(crate) type Samples = HashMap<Slot, Vec<f64>>;

/// Net ns per check: gross − the floor measured by the same child.
pub(crate) struct Net<'a>(pub(crate) &'a Samples);

impl Net<'_> {
    /// The gross ns per check of a program, one per round.
    pub(crate) fn gross(&self, kind: Kind, case: usize, size: usize) -> Option<&[f64]> {
        let size = if kind == Kind::Floor { 0 } else { size };
        self.0.get(&Slot { kind, case, size }).map(Vec::as_slice)
    }

    /// The net ns per check of a program, one per round.
    pub(crate) fn nets(&self, kind: Kind, case: usize, size: usize) -> Option<Vec<f64>> {
        let gross = self.gross(kind, case, size)?;
        let floor = self.gross(Kind::Floor, case, 0)?;
        Some(gross.iter().zip(floor).map(|(g, f)| g - f).collect())
    }

    /// Median net ns per check over rounds.
    pub(crate) fn net(&self, kind: Kind, case: usize, size: usize) -> Option<f64> {
        self.nets(kind, case, size).map(|n| median(&n))
    }

    /// `a` against `k` times `b` (kind and size), both measured by the
    /// same child in each round.
    pub(crate) fn paired(
        &self,
        case: usize,
        a: (Kind, usize),
        b: (Kind, usize),
        k: f64,
    ) -> Option<Paired> {
        let (a, b) = (self.nets(a.0, case, a.1)?, self.nets(b.0, case, b.1)?);
        Some(paired(&a, &b, k))
    }
}

/// Every round sets every program with a map up again (unless `--reuse`):
/// each hash map draws its own hash seed, which decides which keys share a
/// bucket, so one set-up is one draw and a median over rounds is a median
/// over draws too. Then one child per case, the cases in a shuffled order.
pub(crate) fn run_checks(exe: &Path, parent: &Path, nodes: &Nodes, o: &Options) -> Res<Samples> {
    let slots = plan();
    let mut samples = Samples::new();
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut order: Vec<usize> = (0..CASES.len()).collect();
    let (mut targets, mut fixed) = (Vec::new(), HashMap::new());
    let mut raw = match &o.raw {
        Some(path) => {
            let mut f = std::fs::File::create(path)
                .map_err(|e| format!("--raw {}: {e}", path.display()))?;
            writeln!(f, "round\tcase\tprogram\trules\tchunk\tns")?;
            Some(std::io::BufWriter::new(f))
        }
        None => None,
    };
    for round in 0..o.rounds {
        let start = Instant::now();
        if round == 0 || !o.reuse {
            // The old round's cgroups go before the new ones come.
            targets.clear();
            targets = set_up_targets(parent, nodes, &slots, round, &mut fixed)?;
        }
        let set_up = start.elapsed();
        rng.shuffle(&mut order);
        for &case in &order {
            check_stop()?;
            let group: Vec<&Target> = targets.iter().filter(|t| t.slot.case == case).collect();
            for (t, chunks) in group.iter().zip(measure(exe, &group, o.opens)?) {
                if let Some(raw) = &mut raw {
                    let s = t.slot;
                    for (i, ns) in chunks.iter().enumerate() {
                        writeln!(raw, "{round}\t{case}\t{:?}\t{}\t{i}\t{ns}", s.kind, s.size)?;
                    }
                }
                samples.entry(t.slot).or_default().push(median(&chunks));
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
    if let Some(mut raw) = raw {
        raw.flush()?;
    }
    Ok(samples)
}
