// SPDX-License-Identifier: LGPL-2.1-or-later
//! The targets the library is held to (BENCHMARKS.md), each checked on
//! this run's numbers with a verdict.
//!
//! A timed comparison is MET when its whole 95% confidence interval is on
//! the right side of the line, NOT MET when the whole interval is on the
//! wrong side, and UNCLEAR when the interval crosses the line: then the run
//! cannot tell, and another run could go either way (more `--rounds`
//! narrow the interval). A count (bpf(2) calls, syscalls) has no noise and
//! is MET or NOT MET. A target is MET when every check is, NOT MET when
//! any check is, UNCLEAR otherwise.

use crate::cases::*;
use crate::control_plane::*;
use crate::per_check::*;
use crate::programs::*;
use crate::report::thousands;
use crate::stats::*;
use crate::syscalls::{self, Counts, OPS};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Met,
    NotMet,
    Unclear,
}

impl Verdict {
    pub(crate) fn text(self) -> &'static str {
        match self {
            Verdict::Met => "MET",
            Verdict::NotMet => "NOT MET",
            Verdict::Unclear => "UNCLEAR",
        }
    }

    /// `a ≤ k·b` on paired rounds (the CI of the median ratio).
    fn at_most(p: &Paired, k: f64) -> Verdict {
        if p.hi <= k {
            Verdict::Met
        } else if p.lo > k {
            Verdict::NotMet
        } else {
            Verdict::Unclear
        }
    }

    /// The ratio within `1 ± tolerance`.
    fn within(p: &Paired, tolerance: f64) -> Verdict {
        let (low, high) = (1.0 - tolerance, 1.0 + tolerance);
        if p.lo >= low && p.hi <= high {
            Verdict::Met
        } else if p.lo > high || p.hi < low {
            Verdict::NotMet
        } else {
            Verdict::Unclear
        }
    }

    fn count(ok: bool) -> Verdict {
        if ok {
            Verdict::Met
        } else {
            Verdict::NotMet
        }
    }
}

/// One comparison of a target: where, what was measured, its verdict, and
/// how far from the line it is (to name the worst).
pub(crate) struct Check {
    pub(crate) place: String,
    pub(crate) measured: String,
    pub(crate) verdict: Verdict,
    badness: f64,
}

pub(crate) struct Target {
    pub(crate) name: &'static str,
    pub(crate) checks: Vec<Check>,
}

impl Target {
    pub(crate) fn verdict(&self) -> Verdict {
        let v = |want| self.checks.iter().any(|c| c.verdict == want);
        if self.checks.is_empty() || v(Verdict::NotMet) {
            Verdict::NotMet
        } else if v(Verdict::Unclear) {
            Verdict::Unclear
        } else {
            Verdict::Met
        }
    }

    /// The check that decides the verdict: among those with the target's
    /// verdict, the furthest from the line.
    pub(crate) fn worst(&self) -> Option<&Check> {
        let verdict = self.verdict();
        self.checks
            .iter()
            .filter(|c| c.verdict == verdict)
            .max_by(|a, b| a.badness.total_cmp(&b.badness))
    }
}

/// "0.93 [0.85–1.01]".
pub(crate) fn ratio_ci(p: &Paired) -> String {
    let r = |v: f64| match v {
        f64::INFINITY => "∞".to_string(),
        f64::NEG_INFINITY => "−∞".to_string(),
        v => format!("{v:.2}"),
    };
    format!("{} [{}–{}]", r(p.ratio), r(p.lo), r(p.hi))
}

/// "+4.1% [+1.0…+7.2]".
pub(crate) fn percent_ci(p: &Paired) -> String {
    let pc = |r: f64| (r - 1.0) * 100.0;
    format!("{:+.1}% [{:+.1}…{:+.1}]", pc(p.ratio), pc(p.lo), pc(p.hi))
}

fn missing(place: String) -> Check {
    Check {
        place,
        measured: "not measured".into(),
        verdict: Verdict::NotMet,
        badness: f64::INFINITY,
    }
}

/// The check "a ≤ k·b" of a measured ratio (None: not measured).
fn at_most(p: Option<Paired>, k: f64, place: String) -> Check {
    match p {
        Some(p) => Check {
            place,
            measured: ratio_ci(&p),
            verdict: Verdict::at_most(&p, k),
            badness: p.ratio / k,
        },
        None => missing(place),
    }
}

/// The sizes of the target "ours ≤ 0.5× the seed".
pub(crate) const SEED_SIZES: [usize; 4] = [10, 200, 1000, 10_000];
pub(crate) const FLAT_TOLERANCE: f64 = 0.10;
pub(crate) const MAX_SYSCALLS: f64 = 2.0;

pub(crate) fn targets(net: &Net, s: &Starts, steady: &Counts) -> Vec<Target> {
    let ratio_check = |case: usize, a: (Kind, usize), b: (Kind, usize), k: f64, place: String| {
        at_most(net.paired(case, a, b, k), k, place)
    };
    let mut runc = Target {
        name: "at 10 rules: ours ≤ 1.0× runc-style (net, on the same opens), every case",
        checks: Vec::new(),
    };
    let mut seed = Target {
        name: "at 10, 200, 1,000 and 10,000 rules: ours ≤ 0.5× the seed (net), every case",
        checks: Vec::new(),
    };
    let mut flat = Target {
        name: "flat: ours at 10,000 rules within ±10% of ours at 10 (net, on the same opens), \
               every case",
        checks: Vec::new(),
    };
    for (c, case) in CASES.iter().enumerate() {
        let place = case.name.to_string();
        runc.checks.push(at_most(
            net.same_opens(RUNC_PAIR, c, 1.0),
            1.0,
            place.clone(),
        ));
        for n in SEED_SIZES {
            seed.checks.push(ratio_check(
                c,
                (Kind::Ours, n),
                (Kind::Seed, n),
                0.5,
                format!("{}, {} rules", case.name, thousands(n)),
            ));
        }
        flat.checks.push(match net.same_opens(FLAT_PAIR, c, 1.0) {
            Some(p) => Check {
                place,
                measured: percent_ci(&p),
                verdict: Verdict::within(&p, FLAT_TOLERANCE),
                badness: (p.ratio - 1.0).abs(),
            },
            None => missing(place),
        });
    }

    let time = paired(&s.ours.total, &s.libvirt.total, 1.0);
    let (ours_calls, libvirt_calls) = (s.ours_calls.total(), s.libvirt_calls.total());
    let qemu = Target {
        name: "QEMU start (deny-all, libvirt's default ACL, `c 136:*`): ≤ 1.0× libvirt's C \
               sequence replayed, in time and in bpf(2) calls",
        checks: vec![
            Check {
                place: "time".into(),
                measured: ratio_ci(&time),
                verdict: Verdict::at_most(&time, 1.0),
                badness: time.ratio,
            },
            Check {
                place: "bpf(2) calls".into(),
                measured: format!("{ours_calls} against {libvirt_calls}"),
                verdict: Verdict::count(ours_calls <= libvirt_calls),
                badness: ours_calls as f64 / libvirt_calls.max(1) as f64,
            },
        ],
    };

    let steady = Target {
        name: "steady state: at most 2 syscalls (of any kind, the freshness check included) \
               per allow or deny",
        checks: OPS
            .iter()
            .zip(steady)
            .map(|(op, counts)| {
                let per = syscalls::per_op(counts);
                Check {
                    place: op.name.to_string(),
                    measured: syscalls::describe(counts),
                    verdict: Verdict::count(per <= MAX_SYSCALLS),
                    badness: per,
                }
            })
            .collect(),
    };
    vec![runc, seed, flat, qemu, steady]
}
