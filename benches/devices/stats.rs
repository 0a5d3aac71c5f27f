// SPDX-License-Identifier: LGPL-2.1-or-later
//! Medians, quantiles, and the confidence intervals the verdicts rest on.

pub(crate) fn median(v: &[f64]) -> f64 {
    quantile(v, 0.5)
}

/// Linear-interpolated quantile.
pub(crate) fn quantile(v: &[f64], q: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return f64::NAN;
    }
    let pos = q * (s.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    s[lo] + (s[hi] - s[lo]) * (pos - lo as f64)
}

/// The distribution-free confidence interval of the median of `v`: the
/// order statistics x(k) and x(n+1-k), with the largest k for which
/// P(Binomial(n, 1/2) < k) ≤ 2.5%, so that it covers the median with at
/// least 95% whatever the distribution (from 6 values on: 21 values give
/// x(6)–x(16); fewer than 6 give the range, which covers less).
pub(crate) fn median_ci(v: &[f64]) -> (f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    // P(X = i) for X ~ Binomial(n, 1/2), summed from i = 0 while ≤ 2.5%.
    let mut p = 0.5f64.powi(n as i32);
    let (mut below, mut k) = (0.0, 0);
    while k < n / 2 && below + p <= 0.025 {
        below += p;
        p *= (n - k) as f64 / (k + 1) as f64;
        k += 1;
    }
    // P(X < k) ≤ 2.5%: the interval is [x(k), x(n+1-k)], 1-based.
    let k = k.max(1);
    (s[k - 1], s[n - k])
}

/// `a` against `k`·`b` over rounds in which both were measured side by
/// side: the median over rounds of the ratio a/b, with the 95% CI of that
/// median. The interval is a sign test: its upper end is at most `k`
/// exactly when enough rounds have a ≤ k·b. A round where b is not above
/// 0 (a program that costs next to nothing) has no ratio; it counts as
/// +∞ or −∞ by the sign of a − k·b, so that it still votes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Paired {
    pub(crate) ratio: f64,
    pub(crate) lo: f64,
    pub(crate) hi: f64,
}

pub(crate) fn paired(a: &[f64], b: &[f64], k: f64) -> Paired {
    let ratios: Vec<f64> = a
        .iter()
        .zip(b)
        .map(|(&a, &b)| {
            if b > 0.0 {
                a / b
            } else if a - k * b <= 0.0 {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            }
        })
        .collect();
    let (lo, hi) = median_ci(&ratios);
    Paired {
        ratio: median(&ratios),
        lo,
        hi,
    }
}
