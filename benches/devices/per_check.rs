// SPDX-License-Identifier: LGPL-2.1-or-later
//! Per-check cost: every program set up on its own cgroup each round, each
//! case measured by one child that goes from one program's cgroup to the
//! next, chunk by chunk; then the pairs whose difference is a few ns, both
//! programs of a pair on one cgroup, so that the same opens time both.

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
/// floor, which holds none); `copy` 1: the same set up a second time (the
/// control pair of [`PAIRS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Slot {
    pub(crate) kind: Kind,
    pub(crate) case: usize,
    pub(crate) size: usize,
    pub(crate) copy: u8,
}

/// The programs of a round: a floor per case, ours and the seed at every
/// size, runc-style at its sizes, and whatever of [`PAIRS`] is a copy.
fn plan() -> Vec<Slot> {
    let mut slots = Vec::new();
    for case in 0..CASES.len() {
        let slot = |kind, size, copy| Slot {
            kind,
            case,
            size,
            copy,
        };
        slots.push(slot(Kind::Floor, 0, 0));
        for &size in &SIZES {
            for kind in [Kind::Seed, Kind::Ours] {
                slots.push(slot(kind, size, 0));
            }
            if RUNC_SIZES.contains(&size) {
                slots.push(slot(Kind::Runc, size, 0));
            }
        }
        for &(kind, size, copy) in PAIRS.iter().flatten() {
            if copy != 0 {
                slots.push(slot(kind, size, copy));
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

/// A cgroup a child opens a case's node in, the programs attached there
/// (every open runs them all) and whether the open must pass.
struct Member<'a> {
    cg: &'a Cg,
    progs: Vec<&'a Target>,
    allow: bool,
}

impl<'a> Member<'a> {
    /// A program alone on its own cgroup.
    fn alone(t: &'a Target) -> Member<'a> {
        Member {
            cg: &t.cg,
            progs: vec![t],
            allow: t.allowed(),
        }
    }
}

/// One measurement of a case: one child opens the case's node `opens`
/// times in the cgroup of each member, chunk by chunk in turn; per member
/// and program, the kernel's ns per run of each chunk.
fn measure(exe: &Path, members: &[Member], opens: u32) -> Res<Vec<Vec<Vec<f64>>>> {
    let first = members
        .first()
        .and_then(|m| m.progs.first())
        .ok_or("an empty group")?;
    let (what, node) = (CASES[first.slot.case].name, &first.node);
    let mut child = Command::new(exe);
    child.args([CHILD, node, &opens.to_string()]);
    // Each program's stats before, and the opens it must run for.
    let mut before: Vec<(&Target, sys::ProgInfo, u64)> = Vec::new();
    for m in members {
        let mut ids = Vec::new();
        for &t in &m.progs {
            let info = sys::prog_info(t.prog.as_fd())?;
            ids.push(info.id.to_string());
            match before.iter_mut().find(|(_, b, _)| b.id == info.id) {
                Some((_, _, runs)) => *runs += u64::from(opens),
                None => before.push((t, info, u64::from(opens))),
            }
        }
        child
            .arg(m.cg.p())
            .arg(ids.join(","))
            .arg(if m.allow { "allow" } else { "deny" });
    }
    let out = child.output()?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!("{what}: {}", err.trim()).into());
    }
    let mut chunks: Vec<Vec<Vec<f64>>> = members
        .iter()
        .map(|m| vec![Vec::new(); m.progs.len()])
        .collect();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut fields = line.split(' ');
        let member = fields.next().and_then(|i| i.parse::<usize>().ok());
        let ns: Option<Vec<f64>> = fields.map(|ns| ns.parse().ok()).collect();
        match (member, ns) {
            (Some(i), Some(ns)) if i < members.len() && ns.len() == members[i].progs.len() => {
                for (per_prog, ns) in chunks[i].iter_mut().zip(ns) {
                    per_prog.push(ns);
                }
            }
            _ => return Err(format!("{what}: the child printed {line:?}").into()),
        }
    }
    for (t, before, want) in before {
        let after = sys::prog_info(t.prog.as_fd())?;
        let runs = after.run_cnt - before.run_cnt;
        if runs != want {
            return Err(format!(
                "{what}: {:?} at {} rules ran {runs} times for {want} opens",
                t.slot.kind, t.slot.size,
            )
            .into());
        }
        if after.run_time_ns == before.run_time_ns {
            return Err(format!("{what}: no run time counted: are the stats on?").into());
        }
    }
    if chunks.iter().flatten().any(|c| c.len() != CHUNKS as usize) {
        return Err(format!("{what}: a program was measured in too few chunks").into());
    }
    Ok(chunks)
}

/// The pairs measured on the same opens as well as alone: (a, b) as
/// (kind, rules, copy), a's gross cost minus b's, for the targets on a
/// difference of a few ns (flatness, ours against runc-style at 10
/// rules), where the noise between two chunks measured apart is larger
/// than the difference; and a control: ours at 10 rules against itself
/// set up again, which must come out at 0.
pub(crate) const PAIRS: [[(Kind, usize, u8); 2]; 3] = [
    [(Kind::Ours, FLAT_TO, 0), (Kind::Ours, FLAT_FROM, 0)],
    [(Kind::Ours, 10, 0), (Kind::Runc, 10, 0)],
    [(Kind::Ours, 10, 1), (Kind::Ours, 10, 0)],
];
/// Flatness's pair in [`PAIRS`].
pub(crate) const FLAT_PAIR: usize = 0;
/// Ours against runc-style at 10 rules, in [`PAIRS`].
pub(crate) const RUNC_PAIR: usize = 1;
/// The control pair in [`PAIRS`].
pub(crate) const CONTROL_PAIR: usize = 2;

/// A pair's a − b (gross ns per check) on the same opens, one per round,
/// by (pair, case).
pub(crate) type PairSamples = HashMap<(usize, usize), Vec<f64>>;

/// Each pair of [`PAIRS`] on one case, both programs attached to one new
/// cgroup, once in each order (a program's place in the cgroup's list
/// may cost or save something). One child per pair opens the node in its
/// two cgroups chunk by chunk, and every open runs both programs, each
/// timed by the kernel: so both run equally often, and neither is kept
/// warmer by other pairs. Per pair: a − b, the median over chunks of each
/// chunk's difference, averaged over the two orders.
fn measure_pairs(
    exe: &Path,
    parent: &Path,
    targets: &[Target],
    (case, round): (usize, usize),
    opens: u32,
    raw: &mut Option<Raw>,
) -> Res<Vec<f64>> {
    let find = |(kind, size, copy): (Kind, usize, u8)| {
        let slot = Slot {
            kind,
            case,
            size,
            copy,
        };
        targets
            .iter()
            .find(|t| t.slot == slot)
            .ok_or(format!("no {slot:?}"))
    };
    let mut diffs = Vec::new();
    for (p, pair) in PAIRS.iter().enumerate() {
        check_stop()?;
        let (a, b) = (find(pair[0])?, find(pair[1])?);
        let orders = [[a, b], [b, a]];
        let mut cgs = Vec::new();
        for (o, order) in orders.iter().enumerate() {
            let mut cg = Cg::new(parent, &format!("pair{p}-{o}-{case}-r{round}"))?;
            for t in order {
                cg.attach_multi(&t.prog)?;
            }
            cgs.push(cg);
        }
        let members: Vec<Member> = cgs
            .iter()
            .zip(&orders)
            .map(|(cg, order)| Member {
                cg,
                progs: order.to_vec(),
                allow: CASES[case].allowed,
            })
            .collect();
        let chunks = measure(exe, &members, opens)?;
        if let Some(raw) = raw {
            for ((o, order), chunks) in orders.iter().enumerate().zip(&chunks) {
                for (t, chunks) in order.iter().zip(chunks) {
                    let program = format!("pair{p}.{o}:{:?}{}", t.slot.kind, t.slot.copy);
                    raw.write(round, case, &program, t.slot.size, chunks)?;
                }
            }
        }
        // a − b: in the first cgroup a is first, in the second it is second.
        let diff = |m: &[Vec<f64>], a: usize| {
            let d: Vec<f64> = m[a].iter().zip(&m[1 - a]).map(|(a, b)| a - b).collect();
            median(&d)
        };
        diffs.push((diff(&chunks[0], 0) + diff(&chunks[1], 1)) / 2.0);
    }
    Ok(diffs)
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
        let name = format!(
            "{:?}-{}-{}-{}-r{round}",
            slot.kind, slot.case, slot.size, slot.copy
        );
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

/// The `--raw` file: every chunk's ns per check, a line each.
struct Raw(std::io::BufWriter<std::fs::File>);

impl Raw {
    fn create(path: &Path) -> Res<Raw> {
        let mut f =
            std::fs::File::create(path).map_err(|e| format!("--raw {}: {e}", path.display()))?;
        writeln!(f, "round\tcase\tprogram\trules\tchunk\tns")?;
        Ok(Raw(std::io::BufWriter::new(f)))
    }

    fn write(
        &mut self,
        round: usize,
        case: usize,
        program: &str,
        rules: usize,
        chunks: &[f64],
    ) -> Res<()> {
        for (i, ns) in chunks.iter().enumerate() {
            writeln!(self.0, "{round}\t{case}\t{program}\t{rules}\t{i}\t{ns}")?;
        }
        Ok(())
    }
}

/// Gross ns per check by slot, one per round.
pub(crate) type Samples = HashMap<Slot, Vec<f64>>;

/// Net ns per check: gross − the floor measured by the same child; and
/// the pairs measured on the same opens.
pub(crate) struct Net<'a> {
    pub(crate) solo: &'a Samples,
    pub(crate) pairs: &'a PairSamples,
}

impl Net<'_> {
    /// The gross ns per check of a program, one per round.
    pub(crate) fn gross(&self, kind: Kind, case: usize, size: usize) -> Option<&[f64]> {
        let size = if kind == Kind::Floor { 0 } else { size };
        let slot = Slot {
            kind,
            case,
            size,
            copy: 0,
        };
        self.solo.get(&slot).map(Vec::as_slice)
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

    /// Pair `pair` of [`PAIRS`], (a, b), against `k`, on the same opens:
    /// per round a/b = 1 + (a − b)/b, with a − b measured on the same
    /// opens and b the median over rounds of b's net cost alone. Its
    /// noise is that of the difference: neither two chunks measured
    /// apart nor one round's b (a few ns, noisy) divide it.
    pub(crate) fn same_opens(&self, pair: usize, case: usize, k: f64) -> Option<Paired> {
        let (kind, size, _) = PAIRS[pair][1];
        let b = self.net(kind, case, size)?;
        let d = self.pairs.get(&(pair, case))?;
        let a: Vec<f64> = d.iter().map(|d| b + d).collect();
        Some(paired(&a, &vec![b; a.len()], k))
    }
}

/// Every round sets every program with a map up again (unless `--reuse`):
/// each hash map draws its own hash seed, which decides which keys share a
/// bucket, so one set-up is one draw and a median over rounds is a median
/// over draws too. Then one child per case, the cases in a shuffled order.
pub(crate) fn run_checks(
    exe: &Path,
    parent: &Path,
    nodes: &Nodes,
    o: &Options,
) -> Res<(Samples, PairSamples)> {
    let mut slots = plan();
    let (mut samples, mut pairs) = (Samples::new(), PairSamples::new());
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut order: Vec<usize> = (0..CASES.len()).collect();
    let (mut targets, mut fixed) = (Vec::new(), HashMap::new());
    let mut raw = o.raw.as_deref().map(Raw::create).transpose()?;
    for round in 0..o.rounds {
        let start = Instant::now();
        if round == 0 || !o.reuse {
            // The old round's cgroups go before the new ones come. The
            // set-up order is shuffled too: where a program and its map
            // land in memory moves an identical program's cost by up to
            // ~0.5 ns (the control pair shows it), and a fixed order
            // would make that a bias instead of noise between rounds.
            targets.clear();
            rng.shuffle(&mut slots);
            targets = set_up_targets(parent, nodes, &slots, round, &mut fixed)?;
        }
        let set_up = start.elapsed();
        rng.shuffle(&mut order);
        for &case in &order {
            check_stop()?;
            let group: Vec<Member> = targets
                .iter()
                .filter(|t| t.slot.case == case && t.slot.copy == 0)
                .map(Member::alone)
                .collect();
            for (m, mut chunks) in group.iter().zip(measure(exe, &group, o.opens)?) {
                let (t, chunks) = (m.progs[0], chunks.remove(0));
                if let Some(raw) = &mut raw {
                    let program = format!("{:?}", t.slot.kind);
                    raw.write(round, case, &program, t.slot.size, &chunks)?;
                }
                samples.entry(t.slot).or_default().push(median(&chunks));
            }
            let diffs = measure_pairs(exe, parent, &targets, (case, round), o.opens, &mut raw)?;
            for (p, d) in diffs.into_iter().enumerate() {
                pairs.entry((p, case)).or_default().push(d);
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
    if let Some(raw) = raw {
        raw.0.into_inner().map_err(|e| e.into_error())?;
    }
    Ok((samples, pairs))
}
