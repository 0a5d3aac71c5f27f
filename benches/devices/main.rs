// SPDX-License-Identifier: LGPL-2.1-or-later
//! The benchmark: what one device check costs the kernel, and what the
//! control plane costs, side by side with the alternatives, in one run,
//! with a verdict on each target (`targets.rs`).
//! Everything it claims is a comparison of things measured side by side in
//! the same run.
//!
//! Run as root (it makes cgroups, device nodes and BPF programs, and removes
//! them all when it ends, also on error, panic or Ctrl-C; Debian's strace
//! counts the syscalls):
//!
//! ```sh
//! cargo bench --features testing --bench devices              # the full run: a few minutes
//! cargo bench --features testing --bench devices -- --quick   # a smoke run: a few seconds
//! cargo bench --features testing --bench devices -- --help    # the options
//! ```
//!
//! **Per-check cost.** The kernel's own run-time stats: `BPF_ENABLE_STATS`
//! turns them on while this process holds the fd (the sysctl is never
//! written), and `BPF_OBJ_GET_INFO_BY_FD` gives each program's
//! `run_time_ns` and `run_cnt`. The programs:
//!
//! - ours: whatever the library attaches, set up through its C ABI as
//!   libvirt would (deny all, then one allow per rule) and found with
//!   `BPF_PROG_QUERY`: nothing is assumed of its maps or code;
//! - seed: libvirt's program (`program::libvirt_program`) on a hash map in
//!   libvirt's format (`rules::get_key`, `rules::get_perms`), sized as
//!   libvirt grows it (64, doubled), attached with no flags;
//! - runc-style: one compare block per rule, first match wins, as runc's
//!   `devicefilter` compiles a rule list (the probed rule is the last block);
//! - floor: `r0 = 1; exit`, the cost of running any program at all; net
//!   cost = gross - floor.
//!
//! Each program has its own cgroup under one scratch parent. For each case,
//! one child process opens the case's node K times in the cgroup of each of
//! the case's programs (every kind, every rule count), moving between the
//! cgroups every K/20 opens and reading the stats around each chunk: the
//! programs are measured side by side, a slow spell of the machine hits
//! them alike, and a program's cost is the median of its chunks (time the
//! child spends preempted inside a program counts as its run time). Every
//! open runs the program once (checked: `run_cnt` grows by exactly the
//! opens, per chunk and in all), and every answer is checked (EPERM for a
//! denial, anything else got past the cgroup), so a wrong set-up cannot
//! produce a number. Every round sets the programs with a map up again
//! (each hash map draws its own hash seed, so one round is one draw); the
//! programs without a map are loaded once. Net costs are taken against the
//! floor measured by the same child. A ratio is the median of the
//! per-round ratios, with its 95% confidence interval (`stats::paired`),
//! and a verdict is read off that interval (`targets.rs`).
//!
//! **On the same opens.** Where a target rests on a difference of a few ns
//! (flatness; ours against runc-style at 10 rules), chunks measured apart
//! are too noisy: so each round also attaches both programs of such a pair
//! to one cgroup (`BPF_F_ALLOW_MULTI`, in both orders), where every open
//! runs both and the kernel times each, and takes a − b on the same opens
//! (`per_check::PAIRS`, one child per pair). A control pair, ours at 10
//! rules against the same rules set up again, shows what the method
//! reads for two equal programs.
//!
//! **Control plane.** Every syscall of an allow and a deny in steady state,
//! counted by strace in a child (`syscalls.rs`); QEMU's start (deny-all and
//! libvirt's default ACL through the library) against a replay of libvirt's
//! C sequence, in time (each start paired with the other side's next) and
//! in bpf(2) calls (`sys::hook`); 10,000 allows on a fresh cgroup (map
//! growth included) against 10,000 `BPF_MAP_UPDATE_ELEM` into a map already
//! large enough.
//!
//! One file per part:
//!
//! - `options.rs`: the command line;
//! - `cgroups.rs`: scratch cgroups, device nodes, the stats fd, Ctrl-C;
//! - `cases.rs`: the rule sets, the probed cases, libvirt's QEMU ACL;
//! - `programs.rs`: the programs compared (ours, seed, runc-style, floor);
//! - `ours.rs`: the library through its C ABI;
//! - `child.rs`: the child that opens a node in each program's cgroup;
//! - `per_check.rs`: the rounds of per-check measurements;
//! - `syscalls.rs`: every syscall of an allow or deny, counted by strace;
//! - `control_plane.rs`: QEMU starts and 10,000 allows, timed;
//! - `libvirt_c.rs`: libvirt's C sequence replayed call for call (the
//!   attrs, the 256 KiB verifier log of every program load);
//! - `density.rs`: many VMs: fds, kernel memory, set-up and adoption by a
//!   restarted daemon per VM, against the replay (issue 23);
//! - `stats.rs`: medians, quantiles, confidence intervals, paired ratios;
//! - `targets.rs`: the targets and their verdicts;
//! - `report.rs`: the markdown report.

mod cases;
mod cgroups;
mod child;
mod control_plane;
mod density;
mod libvirt_c;
mod options;
mod ours;
mod per_check;
mod programs;
mod report;
mod stats;
mod syscalls;
mod targets;

use crate::cgroups::*;
use crate::child::*;
use crate::control_plane::*;
use crate::options::*;
use crate::per_check::*;
use crate::report::*;
use crate::syscalls::*;
use std::process::ExitCode;
use std::time::Instant;
use vircgroup_v2_devices::cgroup::cgroup2_mount;
use vircgroup_v2_devices::sys;

pub(crate) type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn run(o: &Options) -> Res<String> {
    let began = Instant::now();
    let load_before = load_average();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("run as root: the benchmark makes cgroups and BPF programs".into());
    }
    let mount = cgroup2_mount().ok_or("no cgroup2 filesystem is mounted")?;
    let exe = std::env::current_exe()?;
    // Before the long part: the syscall count at the end needs strace.
    let strace = strace_version()?;
    catch_signals();
    // Declared first, dropped last: everything else lives inside.
    let parent = Cg::new(&mount, &unique("vcg2-bench"))?;
    let nodes = Nodes::new()?;
    eprintln!("scratch cgroups under {}", parent.path.display());
    let samples = {
        let _stats = Stats(sys::enable_stats()?);
        run_checks(&exe, &parent.path, &nodes, o)?
    };
    let steady = steady(&exe, &parent.path)?;
    let g = growth(&parent.path, o)?;
    let s = starts(&parent.path, o)?;
    let d = density::density(&exe, &parent.path, o.vms)?;
    let info = RunInfo {
        took: began.elapsed(),
        strace,
        load_before,
    };
    Ok(report(o, &samples, &steady, &g, &s, &info) + &density::report(&d))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some(CHILD) => return child(&args[1..]),
        Some(STEADY_CHILD) => return steady_child(&args[1..]),
        Some(density::ADOPT_CHILD) => return density::adopt_child(&args[1..]),
        _ => {}
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
