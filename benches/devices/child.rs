// SPDX-License-Identifier: LGPL-2.1-or-later
//! The child process, re-executed from the benchmark, that opens a node
//! in a loop in each program's cgroup and reports the kernel's ns per run.

use crate::Res;
use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::process::ExitCode;
use vircgroup_v2_devices::sys;

/// First argument of the benchmark re-executed as the child that opens a
/// node in a loop (so the parent never forks without exec).
pub(crate) const CHILD: &str = "__open-loop";

/// Chunks each program's opens are split into. A child measures the
/// programs of one case side by side, moving between their
/// cgroups chunk by chunk, so that a slow spell of the machine (a busy
/// sibling CPU, the hypervisor) hits them alike; a program's cost is the
/// median over its chunks, so that a chunk in which the child was
/// preempted inside the program (that time counts as run time) is left out.
pub(crate) const CHUNKS: u32 = 20;

/// `__open-loop NODE K (CGROUP PROG_IDS allow|deny)...`: opens NODE
/// read-only K times in each CGROUP, in [`CHUNKS`] chunks per cgroup, the
/// cgroups taking turns chunk by chunk (the order shifts every chunk), and
/// prints one line per chunk: the cgroup's index and, for each program of
/// PROG_IDS (comma-separated: the programs attached there, all of which
/// run on every open), the ns per run over the chunk. Fails unless each
/// chunk ran each program once per open and every answer is the expected
/// one (deny: EPERM; allow: anything else, as a node without a driver
/// gives ENXIO or EIO once the cgroup let it through).
pub(crate) fn child(args: &[String]) -> ExitCode {
    match open_loop(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{CHILD}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A cgroup the child opens the node in.
struct Member {
    cgroup: String,
    /// The programs' ids and fds.
    progs: Vec<(u32, OwnedFd)>,
    allow: bool,
}

fn open_loop(args: &[String]) -> Res<()> {
    let usage = "expected NODE K (CGROUP PROG_ID[,PROG_ID...] allow|deny)...";
    let [node, count, members @ ..] = args else {
        return Err(usage.into());
    };
    if members.is_empty() || members.len() % 3 != 0 {
        return Err(usage.into());
    }
    let count: u64 = count.parse()?;
    let members = members
        .chunks(3)
        .map(|m| -> Res<Member> {
            Ok(Member {
                cgroup: m[0].clone(),
                progs: m[1]
                    .split(',')
                    .map(|id| {
                        let id = id.parse()?;
                        Ok((id, sys::prog_get_fd_by_id(id)?))
                    })
                    .collect::<Res<_>>()?,
                allow: match m[2].as_str() {
                    "allow" => true,
                    "deny" => false,
                    other => return Err(format!("{usage}, not {other:?}").into()),
                },
            })
        })
        .collect::<Res<Vec<Member>>>()?;
    let mut open = OpenOptions::new();
    open.read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    let chunks = u64::from(CHUNKS);
    let mut out = String::new();
    for chunk in 0..chunks {
        let n = count / chunks + u64::from(chunk < count % chunks);
        for turn in 0..members.len() {
            let i = (turn + chunk as usize) % members.len();
            let m = &members[i];
            std::fs::write(format!("{}/cgroup.procs", m.cgroup), "0")
                .map_err(|e| format!("cannot join {}: {e}", m.cgroup))?;
            let before = stats(&m.progs)?;
            let (mut eperm, mut other) = (0, None);
            for _ in 0..n {
                match open.open(node) {
                    Ok(_) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EPERM) => eperm += 1,
                    Err(e) => other = Some(e),
                }
            }
            let after = stats(&m.progs)?;
            if (m.allow && eperm > 0) || (!m.allow && eperm != n) {
                return Err(format!(
                    "{node} in {}: expected {}, got EPERM for {eperm} of {n} opens \
                     (other answer: {other:?})",
                    m.cgroup,
                    if m.allow { "allow" } else { "deny" }
                )
                .into());
            }
            let _ = write!(out, "{i}");
            for ((before, after), (id, _)) in before.iter().zip(&after).zip(&m.progs) {
                let runs = after.run_cnt - before.run_cnt;
                if runs != n {
                    return Err(format!(
                        "{}: program {id} ran {runs} times for {n} opens",
                        m.cgroup
                    )
                    .into());
                }
                let ns = (after.run_time_ns - before.run_time_ns) as f64 / n.max(1) as f64;
                let _ = write!(out, " {ns}");
            }
            out.push('\n');
        }
    }
    print!("{out}");
    Ok(())
}

/// The run-time stats of each program, read one after the other.
fn stats(progs: &[(u32, OwnedFd)]) -> Res<Vec<sys::ProgInfo>> {
    Ok(progs
        .iter()
        .map(|(_, p)| sys::prog_info(p.as_fd()))
        .collect::<Result<_, _>>()?)
}
