// SPDX-License-Identifier: LGPL-2.1-or-later
//! Scenario 2: a restart after SIGKILL in the middle of a batch of allows.

use crate::common::*;
use crate::helpers::*;
use ::vircgroup_v2_devices::api;
use ::vircgroup_v2_devices::capi::*;
use ::vircgroup_v2_devices::program::interp;
use ::vircgroup_v2_devices::rules::{self, Rule, READ, RW, WRITE};
use std::collections::BTreeMap;
use std::time::Duration;

const VICTIM_BASE: u32 = 100;
const VICTIM_BATCH: u32 = 20_000;

/// Rule `i` of the victim: `c 1:3 rw` first, then exact rules, a new
/// major wildcard every 97 rules and a `*:m` wildcard every 1000 (each a
/// new index bit, written before its rule). Every rule has its own key.
fn victim_rule(i: u32) -> Rule {
    let i_ = i as i32;
    if i == 0 {
        rule(b'c', 1, 3, RW)
    } else if i % 97 == 5 {
        rule(b'c', 1000 + i_ / 97, -1, READ)
    } else if i % 1000 == 999 {
        rule(b'b', -1, i_, WRITE)
    } else {
        rule(b'c', 300, i_, RW)
    }
}

/// A node rule `i` covers, and the access it grants (`round` makes the
/// node's name unique).
fn victim_access(n: &Nodes, i: u32, round: usize) -> String {
    let r = victim_rule(i);
    let (ty, major, minor) = (
        if r.ty == rules::DevType::Block {
            'b'
        } else {
            'c'
        },
        r.major.unwrap_or(7) as u64,
        r.minor.unwrap_or(1) as u64,
    );
    let node = n.node(&format!("v{i}_{round}"), ty, major, minor);
    let kind = match r.perms {
        RW => "rw",
        READ => "r",
        _ => "w",
    };
    format!("{kind}:{node}")
}

/// The victim of the restart test, run in its own process: configures
/// VICTIM_BASE rules, says so, then allows the batch, saying `done I` after
/// each (and `growing I` before one that grows the map), until it is
/// killed.
#[test]
#[ignore = "run by a_restart_after_sigkill_finds_each_rule_whole_or_absent"]
fn restart_victim() {
    let path = std::env::var("VCG2_VICTIM_CGROUP").expect("run by the restart test");
    api::deny_all(&path).unwrap();
    for i in 0..VICTIM_BASE {
        api::allow(&path, &victim_rule(i)).unwrap();
    }
    println!("configured");
    for i in VICTIM_BASE..VICTIM_BASE + VICTIM_BATCH {
        let s = api::state(&path).unwrap();
        if s.count == s.max {
            println!("growing {i}");
        }
        api::allow(&path, &victim_rule(i)).unwrap();
        println!("done {i}");
    }
    println!("finished");
    std::thread::sleep(Duration::from_secs(60));
}

/// The rules of the one program attached to `path`, read from the kernel
/// directly: (rules, capacity, whether the program's hints announce every
/// rule).
fn raw_maps(path: &str) -> (BTreeMap<u64, u32>, u32, bool) {
    let ids = ::vircgroup_v2_devices::cgroup::Cgroup::open(path)
        .and_then(|c| c.attached())
        .unwrap()
        .ids;
    assert_eq!(ids.len(), 1, "one program attached: {ids:?}");
    let view = ::vircgroup_v2_devices::testing::kernel_view(path)
        .unwrap()
        .expect("a program of the library");
    assert!(is_our_program(&view.program.name), "{:?}", view.program);
    (view.rules, view.max, view.hints_cover)
}

/// Scenario 2: a process configures 100 rules and is killed with SIGKILL
/// in the middle of a batch of allows (at several points, growths
/// included); a new process finds every rule the victim finished, whole,
/// at most the one it was writing, nothing else, and an index that
/// covers them; it adopts that state and the kernel enforces it.
#[test]
fn a_restart_after_sigkill_finds_each_rule_whole_or_absent() {
    use std::io::BufRead;
    let Some(mount) = privileged() else { return };
    let _s = shared();
    let n = Nodes::new();
    // When to kill: after that many `done` lines, or right after the
    // victim says it starts that growth; the kill lands a little later,
    // wherever the victim is by then.
    enum Kill {
        Done(u32),
        Growing(u32),
    }
    let kills = [
        Kill::Done(0),
        Kill::Done(3),
        Kill::Growing(1),
        Kill::Growing(2),
        Kill::Done(150),
        Kill::Growing(3),
        Kill::Growing(4),
        Kill::Done(900),
    ];
    for (round, kill) in kills.iter().enumerate() {
        let cg = Scratch::new(&mount);
        let child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "restart::restart_victim",
                "--ignored",
                "--nocapture",
            ])
            .args(["--test-threads=1"])
            .env("VCG2_VICTIM_CGROUP", cg.p())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut child = ChildGuard(child);
        let mut out = std::io::BufReader::new(child.0.stdout.take().unwrap());
        let mut line = String::new();
        let mut done = None;
        let (mut dones, mut growths) = (0, 0);
        loop {
            line.clear();
            assert!(out.read_line(&mut line).unwrap() > 0, "victim died");
            let l = line.trim();
            if let Some(i) = l.strip_prefix("done ") {
                done = Some(i.parse::<u32>().unwrap());
                dones += 1;
            }
            growths += l.starts_with("growing ") as u32;
            let now = match *kill {
                Kill::Done(n) => (l == "configured" || done.is_some()) && dones >= n,
                Kill::Growing(n) => growths >= n,
            };
            if now {
                break;
            }
        }
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
        for l in rest.lines() {
            if let Some(i) = l.strip_prefix("done ") {
                done = Some(i.parse().unwrap());
            }
            assert_ne!(
                l, "finished",
                "round {round}: the victim finished before the kill"
            );
        }
        // Rules 0..=last were finished; `last + 1` may or may not be there.
        let last = done.unwrap_or(VICTIM_BASE - 1);
        let in_flight = last + 1;
        let (entries, max, hints_cover) = raw_maps(cg.p());
        let what = format!("round {round}: killed after rule {last}");
        for i in 0..=last {
            let r = victim_rule(i);
            assert_eq!(
                entries.get(&r.key()),
                Some(&r.value()),
                "{what}: rule {i} {r}"
            );
        }
        let r = victim_rule(in_flight);
        let has_in_flight = match entries.get(&r.key()) {
            None => false,
            Some(&v) => {
                assert_eq!(v, r.value(), "{what}: rule {in_flight} {r} half there");
                true
            }
        };
        assert_eq!(
            entries.len() as u32,
            last + 1 + has_in_flight as u32,
            "{what}: rules nobody allowed"
        );
        assert!(hints_cover, "{what}: the program's hints hide a rule");
        // This process adopts it as it is.
        let p = c(cg.p());
        // SAFETY: valid C string.
        assert_eq!(unsafe { vircgroup_v2_devices_detect_prog(p.as_ptr()) }, 0);
        let s = get_state(&p);
        assert_eq!(
            (s.count as usize, s.max as u32),
            (entries.len(), max),
            "{what}"
        );
        let expected: Vec<(u64, u32)> = entries.iter().map(|(&k, &v)| (k, v)).collect();
        assert_eq!(cg.list(), rules::list_text(&expected), "{what}");
        // The kernel enforces it: the first rule, the last finished, the
        // one in flight, and the first never attempted.
        let never = in_flight + 1;
        let cases = [
            (victim_access(&n, 0, round), true),
            (victim_access(&n, last, round), true),
            (victim_access(&n, in_flight, round), has_in_flight),
            (victim_access(&n, never, round), false),
        ];
        assert_enforced(&cg, &cases, &what);
        // And the program the library loaded decides as check does, for
        // every rule, on the maps read back from the kernel.
        let (prog, maps) = ::vircgroup_v2_devices::testing::snapshot(cg.p())
            .unwrap()
            .unwrap();
        for i in (0..=never).step_by(7).chain([last, in_flight, never]) {
            let r = victim_rule(i);
            let (ty, dev) = match r.ty {
                rules::DevType::Block => (rules::DEV_BLOCK, b'b'),
                _ => (rules::DEV_CHAR, b'c'),
            };
            let (major, minor) = (r.major.unwrap_or(7), r.minor.unwrap_or(1));
            let access = (rules::acc_bits(r.perms) << 16) | ty;
            let kernel = interp::run(&prog, &maps, access, major, minor) == 1;
            let exact = rule(dev, major as i32, minor as i32, r.perms);
            assert_eq!(
                kernel,
                api::check(cg.p(), &exact).unwrap(),
                "{what}: {exact}"
            );
            assert_eq!(
                kernel,
                i <= last || (i == in_flight && has_in_flight),
                "{what}: {exact}"
            );
        }
        // The new process carries on.
        assert_eq!(allow_c(&p, b'c', 242, 1, READ), 0, "{}", last_error());
        eprintln!(
            "restart round {round}: killed after rule {last} (rule {in_flight} {}), map of {max}",
            if has_in_flight { "there" } else { "absent" }
        );
    }
}
