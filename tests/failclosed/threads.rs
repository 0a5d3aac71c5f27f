// SPDX-License-Identifier: LGPL-2.1-or-later
//! Scenario 5: threads on many cgroups agree with a model of their calls.

use crate::common::*;
use crate::helpers::*;
use ::vircgroup_v2_devices::api;
use ::vircgroup_v2_devices::rules::{self, MKNOD, READ, WRITE};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A tiny deterministic generator (xorshift64*), so that a failure can be
/// replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A model of one thread's rules: (cgroup, type b/c, major, minor or -1)
/// -> VIRCGROUP_DEVICE_* bits. Thread `t` only touches major `240 + t`, so
/// each thread's model is exact whatever the interleaving.
type Model = HashMap<(usize, u8, i32, i32), i32>;

fn perms_text(p: i32) -> String {
    [(READ, 'r'), (WRITE, 'w'), (MKNOD, 'm')]
        .iter()
        .filter(|(b, _)| p & b != 0)
        .map(|(_, c)| *c)
        .collect()
}

/// The `devices.list` lines of `model` for cgroup `cg` and the majors
/// `majors`, sorted: one line per rule, a block and a char rule on the same
/// numbers two lines (as cgroup v1 lists them).
fn model_lines(model: &Model, cg: usize, majors: std::ops::Range<i32>) -> Vec<String> {
    let mut lines: Vec<String> = model
        .iter()
        .filter(|(&(g, _, major, _), &p)| g == cg && majors.contains(&major) && p != 0)
        .map(|(&(_, ty, major, minor), &p)| {
            let minor = if minor < 0 {
                "*".to_string()
            } else {
                minor.to_string()
            };
            format!("{} {major}:{minor} {}", ty as char, perms_text(p))
        })
        .collect();
    lines.sort();
    lines
}

fn list_lines(text: &str, majors: std::ops::Range<i32>) -> Vec<String> {
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| {
            let major = l[2..].split(':').next().unwrap();
            major.parse().is_ok_and(|m| majors.contains(&m))
        })
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

const THREADS: usize = 8;
const CGROUPS: usize = 50;
const CALLS: usize = 2000;

/// One thread's calls: random allow/deny/check/list on random cgroups,
/// on its own major only; every check and every list is compared with
/// the model as it goes.
fn thread_calls(t: usize, paths: &[String]) -> Model {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (t as u64 + 1));
    let mut model = Model::new();
    let major = 240 + t as i32;
    for call in 0..CALLS {
        let g = rng.below(CGROUPS as u64) as usize;
        let path = &paths[g];
        let ty = [b'b', b'c', b'a'][rng.below(3) as usize];
        let minor = if rng.below(8) == 0 {
            -1
        } else {
            rng.below(24) as i32
        };
        let perms = 1 + rng.below(7) as i32;
        let what = format!(
            "thread {t} call {call}: {} {major}:{minor} {perms}",
            ty as char
        );
        match rng.below(20) {
            0..=6 => {
                api::allow(path, &rule(ty, major, minor, perms)).expect(&what);
                for t in [b'b', b'c'] {
                    if ty == b'a' || ty == t {
                        *model.entry((g, t, major, minor)).or_default() |= perms;
                    }
                }
            }
            7..=11 => {
                api::deny(path, &rule(ty, major, minor, perms)).expect(&what);
                for t in [b'b', b'c'] {
                    if ty == b'a' || ty == t {
                        *model.entry((g, t, major, minor)).or_default() &= !perms;
                    }
                }
            }
            12..=17 => {
                // An access to one device (exact minor) of type b or c:
                // allowed by the exact rule or the major's wildcard when
                // one of them holds every requested bit.
                let t_ = if ty == b'a' { b'c' } else { ty };
                let minor = minor.max(0);
                let has = |m: i32| model.get(&(g, t_, major, m)).copied().unwrap_or(0);
                let expected = has(minor) & perms == perms || has(-1) & perms == perms;
                let got = api::check(path, &rule(t_, major, minor, perms)).expect(&what);
                assert_eq!(got, expected, "{what}: check");
            }
            _ => {
                let text = api::list(path).expect(&what);
                assert_eq!(
                    list_lines(&text, major..major + 1),
                    model_lines(&model, g, major..major + 1),
                    "{what}: list"
                );
            }
        }
    }
    model
}

/// Scenario 5: 8 threads, 50 cgroups, 2,000 random allow/deny/check/list
/// calls each (maps growing under them); every check and list agrees with
/// a model of the calls as they go, every cgroup's final list equals the
/// model and the kernel's map, no deadlock (a deadline), no fd leak.
#[test]
fn threads_on_many_cgroups_match_a_model() {
    let Some(mount) = privileged() else { return };
    let _x = exclusive();
    let _beacon = hold_beacon(&mount);
    let cgs: Vec<Scratch> = (0..CGROUPS).map(|_| Scratch::new(&mount)).collect();
    let paths: Vec<String> = cgs.iter().map(|cg| cg.p().to_string()).collect();
    for p in &paths {
        api::deny_all(p).unwrap();
    }
    let fds = fd_count();
    let started = Instant::now();
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let paths = paths.clone();
            std::thread::spawn(move || thread_calls(t, &paths))
        })
        .collect();
    // No deadlock: every thread finishes well within the deadline (a
    // deadlock fails the test instead of hanging it).
    let deadline = started + Duration::from_secs(120);
    while !handles.iter().all(|h| h.is_finished()) {
        assert!(
            Instant::now() < deadline,
            "threads still running after 120s: deadlock?"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let elapsed = started.elapsed();
    let mut model = Model::new();
    for h in handles {
        model.extend(h.join().expect("a thread failed"));
    }
    assert_eq!(fd_count(), fds, "fds: {:#?}", fd_targets());
    let majors = 240..240 + THREADS as i32;
    let mut max_rules = 0;
    for (g, p) in paths.iter().enumerate() {
        let text = api::list(p).unwrap();
        assert_eq!(
            list_lines(&text, majors.clone()),
            model_lines(&model, g, majors.clone()),
            "cgroup {g}"
        );
        assert_eq!(
            text.lines().count(),
            list_lines(&text, majors.clone()).len()
        );
        // What the library holds is what the kernel has.
        let kernel: Vec<(u64, u32)> = ::vircgroup_v2_devices::testing::kernel_view(p)
            .unwrap()
            .expect("our program")
            .rules
            .into_iter()
            .collect();
        assert_eq!(rules::list_text(&kernel), text, "cgroup {g}: kernel map");
        max_rules = max_rules.max(get_state(&c(p)).count);
    }
    eprintln!(
        "threads: {THREADS} x {CALLS} calls on {CGROUPS} cgroups in {:.2}s, up to {max_rules} rules a cgroup, {fds} fds before and after",
        elapsed.as_secs_f64()
    );
}
