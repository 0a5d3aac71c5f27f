// SPDX-License-Identifier: LGPL-2.1-or-later
//! Scenario 3: growth from 64 to 8192 rules under probing fails closed.

use crate::common::*;
use crate::helpers::*;
use ::vircgroup_v2_devices::capi::*;
use ::vircgroup_v2_devices::rules::{READ, RW};
use ::vircgroup_v2_devices::sys::{self, hook};
use std::time::Instant;

/// Grows the map of `cg` (deny_all, `c 1:3 rw`, `c 136:* rw`, `c 500:0 r`
/// allowed) to `total` rules on major 500 while a probe loops inside: the
/// allowed nodes must never get EPERM, the denied ones never open. Returns
/// (probe rounds, program replacements).
pub(crate) fn grow_under_probe(
    cg: &Scratch,
    devs: &Devs,
    total: u32,
    extra_denied: &[String],
) -> (u64, u64) {
    let p = c(cg.p());
    // SAFETY: valid C string.
    assert_eq!(unsafe { vircgroup_v2_deny_all_devices(p.as_ptr()) }, 0);
    for (t, ma, mi, perms) in [(b'c', 1, 3, RW), (b'c', 136, -1, RW), (b'c', 500, 0, READ)] {
        assert_eq!(allow_c(&p, t, ma, mi, perms), 0, "{}", last_error());
    }
    let allowed = [
        format!("rw:{}", devs.null),
        format!("rw:{}", devs.pts),
        format!("r:{}", devs.nodes.node("c500_0", 'c', 500, 0)),
    ];
    let mut denied = vec![
        format!("r:{}", devs.zero),
        format!("f:{}", devs.zero),
        format!("w:{}", devs.nodes.node("c500_1w", 'c', 500, 1)),
        format!(
            "r:{}",
            devs.nodes.node("c500_big", 'c', 500, total as u64 + 1)
        ),
        format!("r:{}", devs.nodes.node("b136_5", 'b', 136, 5)),
    ];
    denied.extend_from_slice(extra_denied);
    let accesses: Vec<String> = allowed.iter().chain(&denied).cloned().collect();
    let probe = ProbeLoop::start(&cg.path, &accesses);
    let loads = || hook::calls()[sys::cmd::PROG_LOAD as usize];
    let before = loads();
    let mut max = get_state(&p).max;
    let mut maxes = vec![max];
    for minor in 1..=total as i32 - 3 {
        assert_eq!(allow_c(&p, b'c', 500, minor, READ), 0, "{}", last_error());
        if minor % 64 == 0 || minor == total as i32 - 3 {
            let now = get_state(&p).max;
            if now != max {
                maxes.push(now);
                max = now;
            }
        }
    }
    let replacements = loads() - before;
    let counts = probe.stop();
    for (i, access) in accesses.iter().enumerate() {
        if i < allowed.len() {
            assert_eq!(counts.denied(i), 0, "{access} was denied: {counts:?}");
        } else {
            assert_eq!(counts.passed(i), 0, "{access} got through: {counts:?}");
        }
    }
    let s = get_state(&p);
    assert_eq!(
        (s.count as u32, s.max as u32),
        (total, total.next_power_of_two())
    );
    let expected_maxes: Vec<isize> = (6..)
        .map(|b| 1isize << b)
        .take_while(|&m| m <= total.next_power_of_two() as isize)
        .collect();
    assert_eq!(maxes, expected_maxes, "one doubling at a time");
    (counts.iterations, replacements)
}

/// Scenario 3: a child opens allowed and denied nodes in a loop while the
/// parent grows the map from 64 to 8192 rules, replacing the program 7
/// times: no allowed open ever gets EPERM, no denied one ever opens.
#[test]
fn growth_to_8192_rules_fails_closed_at_every_instant() {
    let Some(mount) = privileged() else { return };
    let _s = shared();
    let started = Instant::now();
    let (mut rounds, mut replacements) = (0, 0);
    // Three times over, for more probes at the instants of replacement.
    for _ in 0..3 {
        let cg = Scratch::new(&mount);
        let devs = Devs::new();
        let (r, n) = grow_under_probe(&cg, &devs, 8192, &[]);
        // One program a doubling, and now and then one more: a table is
        // rebuilt (the same size, other hash multipliers) when a new key
        // finds both its buckets full, a few times in a thousand rules.
        assert!(
            (7..=7 + 8192 / 100).contains(&n),
            "64 -> 8192 is 7 doublings, one program each: {n} programs"
        );
        assert_eq!(cg.attached().len(), 1);
        rounds += r;
        replacements += n;
    }
    eprintln!(
        "growth 64 -> 8192, 3 times: {replacements} program replacements in {:.2}s, \
         {rounds} probe rounds of 8 accesses, no wrong answer",
        started.elapsed().as_secs_f64()
    );
}
