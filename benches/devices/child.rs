//! The child process, re-executed from the benchmark, that opens a case's
//! node: first in each program's own cgroup (its answer is checked), then
//! in the cgroups that hold all the case's programs at once, where every
//! open runs every program and the kernel's stats give each one's ns per
//! run.

use crate::Res;
use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::process::ExitCode;
use vircgroup_v2_devices::sys::{self, ProgInfo};

/// First argument of the benchmark re-executed as the child that opens a
/// node in a loop (so the parent never forks without exec).
pub(crate) const CHILD: &str = "__open-loop";

/// Times the child goes round the chain cgroups, one chunk of opens in
/// each: a program's cost is the median over its chunks, so that a chunk
/// in which the child was preempted inside the program (that time counts
/// as run time) is left out.
pub(crate) const PASSES: usize = 2;

/// Opens per program in its own cgroup, to check its answer.
pub(crate) const CHECKS: u64 = 3;

/// `__open-loop NODE K N CHAIN... (CGROUP PROG_ID allow|deny)...`: opens
/// NODE read-only CHECKS times in each program's own CGROUP, failing
/// unless the answer is the expected one (deny: EPERM; allow: anything
/// else, as a node without a driver gives ENXIO or EIO once the cgroup let
/// it through); then K times in the N CHAIN cgroups, which hold every
/// PROG_ID (`BPF_F_ALLOW_MULTI`), in [`PASSES`] × N chunks taking the
/// cgroups in turn, printing one line per program and chunk: its index and
/// its ns per run over the chunk. Fails unless every program ran exactly
/// once per open.
pub(crate) fn child(args: &[String]) -> ExitCode {
    match open_loop(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{CHILD}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A program and its own cgroup.
struct Member {
    cgroup: String,
    prog: OwnedFd,
    allow: bool,
}

fn join(cgroup: &str) -> Res<()> {
    std::fs::write(format!("{cgroup}/cgroup.procs"), "0")
        .map_err(|e| format!("cannot join {cgroup}: {e}").into())
}

/// Opens `node` `n` times in the cgroup the child is in; fails unless
/// every answer is `allow`'s.
fn opens(node: &str, n: u64, allow: bool, cgroup: &str) -> Res<()> {
    let mut open = OpenOptions::new();
    open.read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    let (mut eperm, mut other) = (0, None);
    for _ in 0..n {
        match open.open(node) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => eperm += 1,
            Err(e) => other = Some(e),
        }
    }
    if (allow && eperm > 0) || (!allow && eperm != n) {
        return Err(format!(
            "{node} in {cgroup}: expected {}, got EPERM for {eperm} of {n} opens \
             (other answer: {other:?})",
            if allow { "allow" } else { "deny" }
        )
        .into());
    }
    Ok(())
}

fn infos(members: &[Member]) -> Res<Vec<ProgInfo>> {
    Ok(members
        .iter()
        .map(|m| sys::prog_info(m.prog.as_fd()))
        .collect::<Result<_, _>>()?)
}

fn open_loop(args: &[String]) -> Res<()> {
    let usage = "expected NODE K N CHAIN... (CGROUP PROG_ID allow|deny)...";
    let [node, count, n, rest @ ..] = args else {
        return Err(usage.into());
    };
    let n: usize = n.parse()?;
    if n == 0 || rest.len() < n {
        return Err(usage.into());
    }
    let (chains, members) = rest.split_at(n);
    if members.is_empty() || members.len() % 3 != 0 {
        return Err(usage.into());
    }
    let count: u64 = count.parse()?;
    let members = members
        .chunks(3)
        .map(|m| -> Res<Member> {
            Ok(Member {
                cgroup: m[0].clone(),
                prog: sys::prog_get_fd_by_id(m[1].parse()?)?,
                allow: match m[2].as_str() {
                    "allow" => true,
                    "deny" => false,
                    other => return Err(format!("{usage}, not {other:?}").into()),
                },
            })
        })
        .collect::<Res<Vec<Member>>>()?;
    let check_runs = |before: &[ProgInfo], after: &[ProgInfo], n: u64, cgroup: &str| {
        for (i, (b, a)) in before.iter().zip(after).enumerate() {
            let runs = a.run_cnt - b.run_cnt;
            if runs != n {
                return Err(format!(
                    "{cgroup}: program {} ran {runs} times for {n} opens",
                    members[i].cgroup
                ));
            }
        }
        Ok(())
    };
    // Each program alone: its own answer.
    for m in &members {
        join(&m.cgroup)?;
        let before = sys::prog_info(m.prog.as_fd())?;
        opens(node, CHECKS, m.allow, &m.cgroup)?;
        let after = sys::prog_info(m.prog.as_fd())?;
        check_runs(&[before], &[after], CHECKS, &m.cgroup)?;
    }
    // All at once: every open runs every program, one after the other.
    let allow = members.iter().all(|m| m.allow);
    let chunks = (PASSES * chains.len()) as u64;
    let mut out = String::new();
    for chunk in 0..chunks {
        let n = count / chunks + u64::from(chunk < count % chunks);
        let cgroup = &chains[chunk as usize % chains.len()];
        join(cgroup)?;
        let before = infos(&members)?;
        opens(node, n, allow, cgroup)?;
        let after = infos(&members)?;
        check_runs(&before, &after, n, cgroup)?;
        for (i, (b, a)) in before.iter().zip(&after).enumerate() {
            let ns = (a.run_time_ns - b.run_time_ns) as f64 / n.max(1) as f64;
            let _ = writeln!(out, "{i} {ns}");
        }
    }
    print!("{out}");
    Ok(())
}
