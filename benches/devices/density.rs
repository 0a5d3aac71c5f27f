// SPDX-License-Identifier: LGPL-2.1-or-later
//! Many VMs on one host (issue 23): what each VM costs the daemon in fds,
//! the kernel in memory, a QEMU start in time, and a restarted daemon in
//! time to adopt it, ours against libvirt's C sequence replayed
//! (`libvirt_c`), side by side in one run.
//!
//! `vms` pairs of cgroups (1,000; 20 with `--quick`) are set up, the sides
//! taking turns VM by VM, each with libvirt's default rules (`QEMU_ACL`):
//! ours through the C ABI (`deny_all`, then an allow per rule), libvirt's
//! through the replay. Per VM:
//!
//! - set-up time, paired with the other side's VM of the same index;
//! - fds the process holds after the set-up that it did not before
//!   (`/proc/self/fd` counted around it): the daemon's fds for that VM;
//! - kernel memory: `memlock:` of `/proc/self/fdinfo` of the attached
//!   program and of every map it uses (found with `BPF_PROG_QUERY` and the
//!   program's info, nothing assumed); also on a few more VMs per side at
//!   10, 64 and 1,000 rules (libvirt's map grown as libvirt grows it);
//! - adoption: a fresh process (the benchmark re-executed, `__adopt`)
//!   adopts every VM: ours with `detect_prog` then `get_state`, as the
//!   patched libvirt calls them; libvirt's with its detect sequence on its
//!   own programs (`virCgroupV2DevicesDetectProg`: PROG_QUERY, the program
//!   by id, its info, its map by id, the map's info, a walk of its keys).
//!   The two sides take turns VM by VM; each VM is timed and paired.

use crate::cases::*;
use crate::cgroups::*;
use crate::control_plane::{count_calls, libvirt_replay, Calls};
use crate::libvirt_c;
use crate::ours;
use crate::stats::*;
use crate::Res;
use std::fmt::Write;
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Instant;
use vircgroup_v2_devices::sys;

/// First argument of the benchmark re-executed as the adopting daemon.
pub(crate) const ADOPT_CHILD: &str = "__adopt";

/// Rule counts at which kernel memory is also measured.
const MEM_SIZES: [usize; 3] = [10, 64, 1000];

/// One side's measurements, one value per VM.
#[derive(Default)]
pub(crate) struct PerVm {
    pub(crate) setup: Vec<f64>,
    pub(crate) fds: Vec<f64>,
    pub(crate) memlock: Vec<f64>,
    pub(crate) adopt: Vec<f64>,
    /// Ours only: the two calls of an adoption, and next to each, the
    /// program load that `detect_prog`'s tag check makes, timed alone.
    pub(crate) detect: Vec<f64>,
    pub(crate) state: Vec<f64>,
    pub(crate) tag_load: Vec<f64>,
    /// bpf(2) calls of one set-up and of one adoption (the last VM's).
    pub(crate) setup_calls: Option<Calls>,
    pub(crate) adopt_calls: String,
}

pub(crate) struct Density {
    pub(crate) vms: usize,
    pub(crate) ours: PerVm,
    pub(crate) libvirt: PerVm,
    /// (rules, VMs per side, ours' memlock per VM, libvirt's).
    pub(crate) sizes: Vec<(usize, usize, Vec<f64>, Vec<f64>)>,
    pub(crate) seconds: f64,
}

fn open_fds() -> Res<usize> {
    Ok(std::fs::read_dir("/proc/self/fd")?.count())
}

/// `memlock:` of `/proc/self/fdinfo/FD`.
fn memlock(fd: impl AsFd) -> Res<u64> {
    use std::os::fd::AsRawFd;
    let raw = fd.as_fd().as_raw_fd();
    let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{raw}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("memlock:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("no memlock: in /proc/self/fdinfo/{raw}").into())
}

/// Kernel memory of what is attached to `cg`: the program's memlock and
/// that of every map it uses.
fn kernel_memory(cg: &Cg) -> Res<u64> {
    let prog = cg.program()?;
    let info = sys::prog_info(prog.as_fd())?;
    let mut total = memlock(&prog)?;
    for id in info.map_ids {
        total += memlock(sys::map_get_fd_by_id(id)?)?;
    }
    Ok(total)
}

/// Sets `cg` up with `rules`, ours or the replay; its time (s).
fn set_up(cg: &mut Cg, ours_side: bool, rules: &[Spec]) -> Res<f64> {
    let start = Instant::now();
    if ours_side {
        let path = cg.library()?;
        ours::deny_all(&path)?;
        for r in rules {
            ours::allow(&path, r)?;
        }
        let t = start.elapsed().as_secs_f64();
        let (count, _) = ours::state(&path)?;
        if count != rules.len() as isize {
            return Err(format!("{}: {count} rules, not {}", cg.p(), rules.len()).into());
        }
        Ok(t)
    } else {
        let mut g = libvirt_c::Group::new(&cg.path);
        let r = libvirt_replay(&mut g, rules);
        let t = start.elapsed().as_secs_f64();
        cg.attached.extend(g.progfd.take());
        cg.keep.extend(g.mapfd.take());
        r?;
        Ok(t)
    }
}

/// Enough fds for both sides' VMs here and in the adopting child.
fn check_fd_limit(vms: usize) -> Res<()> {
    let need = (vms * 8 + 256) as u64;
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a writable rlimit.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    if lim.rlim_cur >= need {
        return Ok(());
    }
    if lim.rlim_max < need {
        return Err(format!(
            "{vms} VMs need {need} fds (ulimit -n), the hard limit is {}",
            lim.rlim_max
        )
        .into());
    }
    lim.rlim_cur = need;
    // SAFETY: a valid rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(format!("setrlimit(RLIMIT_NOFILE, {need}) failed").into());
    }
    Ok(())
}

pub(crate) fn density(exe: &Path, parent: &Path, vms: usize) -> Res<Density> {
    let began = Instant::now();
    check_fd_limit(vms)?;
    let mut d = Density {
        vms,
        ours: PerVm::default(),
        libvirt: PerVm::default(),
        sizes: Vec::new(),
        seconds: 0.0,
    };
    let mut pairs: Vec<[Cg; 2]> = Vec::new();
    for i in 0..vms {
        check_stop()?;
        let mut cgs = [
            Cg::new(parent, &format!("dn-ours-{i}"))?,
            Cg::new(parent, &format!("dn-libvirt-{i}"))?,
        ];
        for side in if i % 2 == 0 { [0, 1] } else { [1, 0] } {
            let before = open_fds()?;
            let (t, calls) = count_calls(|| set_up(&mut cgs[side], side == 0, &QEMU_ACL));
            let t = t?;
            let held = open_fds()? - before;
            let m = kernel_memory(&cgs[side])?;
            let s = if side == 0 {
                &mut d.ours
            } else {
                &mut d.libvirt
            };
            s.setup.push(t);
            s.fds.push(held as f64);
            s.memlock.push(m as f64);
            s.setup_calls = Some(calls);
        }
        pairs.push(cgs);
        if (i + 1) % 250 == 0 {
            eprintln!("density: {}/{vms} VMs per side set up", i + 1);
        }
    }
    adopt(exe, &pairs, &mut d)?;
    drop(pairs);
    let few = vms.min(10);
    for n in MEM_SIZES {
        let mut rules: Vec<Spec> = QEMU_ACL.to_vec();
        rules.extend(fillers(n - QEMU_ACL.len()));
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for i in 0..few {
            check_stop()?;
            for side in [0, 1] {
                let name = format!("dn-mem-{n}-{side}-{i}");
                let mut cg = Cg::new(parent, &name)?;
                set_up(&mut cg, side == 0, &rules)?;
                let m = kernel_memory(&cg)? as f64;
                if side == 0 { &mut a } else { &mut b }.push(m);
            }
        }
        d.sizes.push((n, few, a, b));
    }
    d.seconds = began.elapsed().as_secs_f64();
    Ok(d)
}

/// Runs the adopting child on every VM and reads its times.
fn adopt(exe: &Path, pairs: &[[Cg; 2]], d: &mut Density) -> Res<()> {
    let list = std::env::temp_dir().join(unique("vcg2-bench-adopt"));
    let text: String = pairs
        .iter()
        .map(|[a, b]| format!("{}\t{}\n", a.p(), b.p()))
        .collect();
    std::fs::write(&list, text)?;
    let out = Command::new(exe)
        .args([ADOPT_CHILD, list.to_str().expect("UTF-8")])
        .output();
    let _ = std::fs::remove_file(&list);
    let out = out?;
    if !out.status.success() {
        return Err(format!(
            "{ADOPT_CHILD}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = line.split('\t').collect();
        match f[..] {
            ["calls", ours, libvirt] => {
                d.ours.adopt_calls = ours.to_string();
                d.libvirt.adopt_calls = libvirt.to_string();
            }
            [a, b, c, t] => {
                let v = |s: &str| s.parse::<f64>().map_err(|e| format!("{line:?}: {e}"));
                d.ours.tag_load.push(v(t)?);
                d.ours.detect.push(v(a)?);
                d.ours.state.push(v(b)?);
                d.ours.adopt.push(v(a)? + v(b)?);
                d.libvirt.adopt.push(v(c)?);
            }
            _ => return Err(format!("{ADOPT_CHILD}: unexpected line {line:?}").into()),
        }
    }
    if d.ours.adopt.len() != pairs.len() {
        return Err(format!(
            "{ADOPT_CHILD}: {} VMs adopted, not {}",
            d.ours.adopt.len(),
            pairs.len()
        )
        .into());
    }
    Ok(())
}

/// `__adopt LIST`: a fresh process adopts every VM of LIST (lines of
/// "ours-cgroup TAB libvirt-cgroup"), the sides taking turns, and prints
/// per VM "detect_prog get_state libvirt's-detect tag-load" (s), then the
/// bpf(2) calls of the last VM's adoption on each side.
pub(crate) fn adopt_child(args: &[String]) -> ExitCode {
    let run = || -> Res<()> {
        let [list] = args else {
            return Err("expected LIST".into());
        };
        let text = std::fs::read_to_string(list)?;
        let mut held = Vec::new();
        let mut out = String::new();
        let (mut ours_calls, mut libvirt_calls) = (None, None);
        for (i, line) in text.lines().enumerate() {
            let (a, b) = line.split_once('\t').ok_or("bad LIST line")?;
            let path = ours::Path::new(a)?;
            let (mut detect, mut state, mut theirs) = (0.0, 0.0, 0.0);
            for side in if i % 2 == 0 { [0, 1] } else { [1, 0] } {
                if side == 0 {
                    let ((r, t1, t2), calls) = count_calls(|| {
                        let start = Instant::now();
                        let r = ours::detect_prog(&path);
                        let t1 = start.elapsed().as_secs_f64();
                        let r = r.and_then(|()| ours::state(&path));
                        (r, t1, start.elapsed().as_secs_f64() - t1)
                    });
                    let (count, _) = r?;
                    if count != QEMU_ACL.len() as isize {
                        return Err(format!("{a}: adopted {count} rules").into());
                    }
                    (detect, state) = (t1, t2);
                    ours_calls = Some(calls);
                } else {
                    let mut g = libvirt_c::Group::new(Path::new(b));
                    let (r, calls) = count_calls(|| {
                        let start = Instant::now();
                        let r = g.detect_prog();
                        (r, start.elapsed().as_secs_f64())
                    });
                    theirs = r.1;
                    r.0?;
                    if g.count != QEMU_ACL.len() || g.progfd.is_none() {
                        return Err(format!("{b}: libvirt's detect found {} rules", g.count).into());
                    }
                    // libvirt keeps the fds in the group.
                    held.push(g);
                    libvirt_calls = Some(calls);
                }
            }
            let tag = tag_load(Path::new(a))?;
            let _ = writeln!(out, "{detect}\t{state}\t{theirs}\t{tag}");
        }
        if let (Some(a), Some(b)) = (ours_calls, libvirt_calls) {
            let _ = writeln!(out, "calls\t{}\t{}", a.describe(1), b.describe(1));
        }
        print!("{out}");
        Ok(())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{ADOPT_CHILD}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What the tag check of `detect_prog` costs on the table program attached
/// at `cg`: its instructions (rebuilt from its map with the library's
/// public `Table`) loaded once more and the tag read, as the library's
/// `recognise::tag_of` does; the tags must agree. Time (s).
fn tag_load(cg: &Path) -> Res<f64> {
    use vircgroup_v2_devices::program::{table::NAME, LICENSE};
    use vircgroup_v2_devices::table::Table;
    let dir = std::fs::File::open(cg)?;
    let attached = sys::prog_query(dir.as_fd(), sys::BPF_CGROUP_DEVICE)?;
    let prog = sys::prog_get_fd_by_id(*attached.ids.first().ok_or("no program")?)?;
    let info = sys::prog_info(prog.as_fd())?;
    let map = sys::map_get_fd_by_id(*info.map_ids.first().ok_or("no map")?)?;
    let table = Table::open(map)?.ok_or("the map is not a table")?;
    let insns = vircgroup_v2_devices::program::table::for_table(&table);
    let start = Instant::now();
    let again = sys::prog_load(sys::BPF_PROG_TYPE_CGROUP_DEVICE, &insns, LICENSE, NAME)?;
    let tag = sys::prog_info(again.as_fd())?.tag;
    let t = start.elapsed().as_secs_f64();
    if tag != info.tag {
        return Err(format!("{}: the program rebuilt has another tag", cg.display()).into());
    }
    Ok(t)
}

/// "8 [8–8]" style: median [min–max].
fn spread(v: &[f64], scale: f64, digits: usize) -> String {
    format!(
        "{:.digits$} [{:.digits$}–{:.digits$}]",
        median(v) * scale,
        quantile(v, 0.0) * scale,
        quantile(v, 1.0) * scale
    )
}

fn at_most(p: &Paired, k: f64) -> &'static str {
    if p.hi <= k {
        "PASS"
    } else if p.lo > k {
        "NOT MET"
    } else {
        "UNCLEAR"
    }
}

fn ci(p: &Paired) -> String {
    format!("{:.2} [{:.2}–{:.2}]", p.ratio, p.lo, p.hi)
}

/// The report's section on many VMs (markdown).
pub(crate) fn report(d: &Density) -> String {
    let mut w = String::new();
    let (o, l) = (&d.ours, &d.libvirt);
    let _ = writeln!(
        w,
        "\n### Many VMs (issue 23)\n\n\
         {} VMs per side, each on its own cgroup, set up with libvirt's default rules (the 8 \
         of the QEMU start), the sides taking turns VM by VM; libvirt's side is its C sequence \
         replayed call for call (`benches/devices/libvirt_c.rs`: every attr a zeroed 144-byte \
         `union bpf_attr`, every program load with `log_level = 1` and a fresh zeroed 256 KiB \
         `log_buf`, as `virBPFLoadProg`). Per VM: median [min–max] over the VMs; ratios: the \
         median over VMs of ours/libvirt paired by index, [95% CI] (sign test). Wall time of \
         this part: {:.0} s.\n",
        thousands(d.vms),
        d.seconds
    );
    let _ = writeln!(
        w,
        "| per VM | ours | libvirt's C code (replay) | ours/libvirt [95% CI] | target | verdict |\n\
         | --- | --: | --: | --: | --- | --- |"
    );
    let setup = paired(&o.setup, &l.setup, 1.0);
    let _ = writeln!(
        w,
        "| QEMU start: set-up (deny all + the 8 rules), µs | {} | {} | {} | ≤ 1.0× | {} |",
        spread(&o.setup, 1e6, 1),
        spread(&l.setup, 1e6, 1),
        ci(&setup),
        at_most(&setup, 1.0)
    );
    let fds_ok = quantile(&o.fds, 1.0) <= quantile(&l.fds, 0.0).min(2.0);
    let _ = writeln!(
        w,
        "| fds held by the daemon after the set-up | {} | {} | {:.2} | ≤ libvirt's 2 | {} |",
        spread(&o.fds, 1.0, 0),
        spread(&l.fds, 1.0, 0),
        median(&o.fds) / median(&l.fds),
        if fds_ok { "PASS" } else { "NOT MET" }
    );
    let mem = paired(&o.memlock, &l.memlock, 1.0);
    let _ = writeln!(
        w,
        "| kernel memory (memlock of program + maps), bytes, 8 rules | {} | {} | {} | (for scale) | |",
        spread(&o.memlock, 1.0, 0),
        spread(&l.memlock, 1.0, 0),
        ci(&mem)
    );
    for (n, k, a, b) in &d.sizes {
        let limit = if *n <= 10 { 1.0 } else { 1.5 };
        let p = paired(a, b, limit);
        let _ = writeln!(
            w,
            "| kernel memory, bytes, {} rules ({k} VMs per side) | {} | {} | {} | ≤ {limit:.1}× | {} |",
            thousands(*n),
            spread(a, 1.0, 0),
            spread(b, 1.0, 0),
            ci(&p),
            at_most(&p, limit)
        );
    }
    let adopt = paired(&o.adopt, &l.adopt, 1.0);
    let _ = writeln!(
        w,
        "| adoption by a fresh process: ours `detect_prog` + `get_state`, libvirt's detect \
         sequence, µs | {} | {} | {} | ≤ 1.0× | {} |",
        spread(&o.adopt, 1e6, 1),
        spread(&l.adopt, 1e6, 1),
        ci(&adopt),
        at_most(&adopt, 1.0)
    );
    let _ = writeln!(
        w,
        "\nOf ours' adoption: `detect_prog` {} µs, `get_state` {} µs (median [min–max]); \
         next to each adoption, the program load of `detect_prog`'s tag check (the attached \
         program's instructions loaded again, its tag read) timed alone: {} µs, {:.0}% of \
         `detect_prog` (medians). \
         bpf(2) calls of one adoption: ours {}, libvirt's {}. Of one set-up: ours {}, \
         libvirt's {}.",
        spread(&o.detect, 1e6, 1),
        spread(&o.state, 1e6, 1),
        spread(&o.tag_load, 1e6, 1),
        100.0 * median(&o.tag_load) / median(&o.detect),
        o.adopt_calls,
        l.adopt_calls,
        o.setup_calls.map_or("–".into(), |c| c.describe(1)),
        l.setup_calls.map_or("–".into(), |c| c.describe(1)),
    );
    w
}

fn thousands(n: usize) -> String {
    crate::report::thousands(n)
}
